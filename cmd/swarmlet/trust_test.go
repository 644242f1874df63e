package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/gossip"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/node/pki"
	"github.com/swarmlet/swarmlet/raftstore"
)

// The trust tests: every port refuses plaintext and strangers, certificates are
// checked for root, expiry, role and membership, workers act only for themselves,
// join tokens pin the CA, CA rotation interrupts nothing, autolock holds the data
// until the key is given, and no secret is on disk in the clear. They use
// 127.66.x.x.

const trustNet = 66

// nodeCert is node i's own certificate and key, as a thief of its data dir would
// hold them.
func (c *cluster) nodeCert(i int) tls.Certificate {
	c.t.Helper()
	dir := filepath.Join(c.dataDir(i), "tls")
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
	if err != nil {
		c.t.Fatalf("node %d's certificate: %v", i, err)
	}
	return pair
}

// showing is a client TLS config that shows cert (none if nil) and accepts any
// server: these tests are about what the server accepts.
func showing(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// apiAs is a client of node j's TCP API that shows cert.
func (c *cluster) apiAs(j int, cert *tls.Certificate) *client.Client {
	c.t.Helper()
	cl, err := client.New("tcp://"+net.JoinHostPort(c.ip(j), "24240"), client.Options{TLS: showing(cert), Timeout: 10 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

func (c *cluster) raftAddr(i int) string   { return net.JoinHostPort(c.ip(i), "24241") }
func (c *cluster) gossipAddr(i int) string { return net.JoinHostPort(c.ip(i), "24242") }

// mint issues a certificate for a fresh key from ca as the cluster's CA would.
func mint(t *testing.T, ca *pki.CA, r pki.NodeRequest) tls.Certificate {
	t.Helper()
	key, csr, err := pki.NewCSR()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.IssueNode(csr, r)
	if err != nil {
		t.Fatal(err)
	}
	return *chain.TLS(key)
}

// tlsExchange dials addr with cfg, sends one byte and reads one: nil only if the
// server accepted the handshake (in TLS 1.3 a client hears of a refused
// certificate on its first read).
func tlsExchange(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}

// plaintextAnswer sends a plaintext request to addr and returns what came back
// before the server closed the connection.
func plaintextAnswer(t *testing.T, addr string, req []byte) []byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(6 * time.Second))
	_, _ = conn.Write(req)
	b, _ := io.ReadAll(conn)
	return b
}

// readCA takes the cluster's CA out of a stopped manager's Raft data the way only
// someone holding the whole data dir can (without autolock the key file opens it):
// the tests need it to mint certificates the cluster must still refuse.
func readCA(t *testing.T, dataDir string) *pki.CA {
	t.Helper()
	dir := filepath.Join(dataDir, "raft")
	kf, err := raftstore.LoadKeyFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	dek, err := kf.DataKey()
	if err != nil {
		t.Fatal(err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	logs, err := raftstore.NewEncryptedLogStore(bolt, dek)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := logs.FirstIndex()
	last, _ := logs.LastIndex()
	var certPEM, keyPEM []byte
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil || l.Type != raft.LogCommand {
			continue
		}
		switch cmd, err := raftstore.Decode(l.Data); c := cmd.(type) {
		case *raftstore.ClusterInit:
			certPEM, keyPEM = c.Trust.CACert, c.Trust.CAKey
		case *raftstore.CAUpdate:
			certPEM, keyPEM = c.CACert, c.CAKey
		default:
			_ = err
		}
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("CA from the raft log: %v", err)
	}
	return ca
}

// grepDataDirs lists the files under the nodes' data dirs that hold needle.
func grepDataDirs(t *testing.T, root string, needle []byte) []string {
	t.Helper()
	var hits []string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, needle) {
			hits = append(hits, path)
		}
		return nil
	})
	return hits
}

func (c *cluster) nodeIDs(t *testing.T, via int) map[int]string {
	t.Helper()
	ns, err := c.nodes(via)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, n := range ns {
		out[nodeIndex(n.Addr)] = n.ID
	}
	return out
}

func wantTLSRefusal(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if !errors.Is(err, client.ErrTLS) {
		t.Fatalf("%s: want a TLS refusal, got %v", what, err)
	}
}

// TestTrust: 3 managers, 2 workers, a service on all of them, and every way in
// that must stay shut.
func TestTrust(t *testing.T) {
	c := newClusterSub(t, trustNet, 0)
	c.start(1, "")
	mtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager"))
	wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	c.start(2, mtok)
	c.start(3, mtok)
	c.start(4, wtok)
	c.start(5, wtok)
	waitFor(t, 15*time.Second, "3 voters and 5 ready nodes", func() bool {
		inf, err := c.info(1)
		ns, err2 := c.nodes(1)
		if err != nil || err2 != nil || inf.Managers != 3 || len(ns) != 5 {
			return false
		}
		for _, n := range ns {
			if n.Status != "ready" {
				return false
			}
		}
		return true
	})
	ids := c.nodeIDs(t, 1)
	secret := "s3cr3t-" + strings.Repeat("x", 8) + fmt.Sprint(time.Now().UnixNano())
	c.mustCLI(1, "service", "create", "--name", "web", "--mode", "global", "-p", "80", "--env", "API_KEY="+secret, "--restart-delay", "0s", whoamiBin)

	t.Run("plaintext and strangers refused on every port", func(t *testing.T) {
		for _, addr := range []string{net.JoinHostPort(c.ip(1), "24240"), c.raftAddr(1)} {
			if got := plaintextAnswer(t, addr, []byte("GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")); len(got) != 0 {
				t.Fatalf("%s answered plaintext HTTP: %q", addr, got)
			}
			// A raft RPC header (type byte, msgpack) in the clear.
			if got := plaintextAnswer(t, addr, []byte{0, 0x81, 0xa4, 'T', 'e', 'r', 'm', 0x09}); len(got) != 0 {
				t.Fatalf("%s answered a plaintext raft RPC: %q", addr, got)
			}
			if err := tlsExchange(addr, showing(nil)); err == nil || !strings.Contains(err.Error(), "certificate required") {
				t.Fatalf("%s: TLS without a certificate: %v, want 'certificate required'", addr, err)
			}
		}
		wantTLSRefusal(t, "API without a certificate", func() error { _, _, err := c.apiAs(2, nil).Nodes(context.Background()); return err }())

		// Gossip: a member without the key, or with another one, cannot join, and
		// nobody's view changes.
		before, _ := c.info(1)
		for name, key := range map[string][]byte{"no key": nil, "wrong key": bytes.Repeat([]byte{7}, 32)} {
			cfg := gossip.Config{Name: "rogue", BindAddr: "127.66.0.90", Meta: map[string]string{"role": "manager", "raft": "1", "api": "24240"}}
			if key != nil {
				cfg.SecretKey = key
			}
			g, err := gossip.Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			n, err := g.Join([]string{c.gossipAddr(1), c.gossipAddr(4)})
			if err == nil || n != 0 {
				t.Errorf("gossip join with %s: contacted %d, err %v", name, n, err)
			}
			_ = g.Shutdown()
		}
		var raw struct {
			GossipAlive int `json:"gossip_alive"`
		}
		out := c.mustCLI(1, "info", "--format", "json")
		_ = json.Unmarshal([]byte(out), &raw)
		if raw.GossipAlive != 5 {
			t.Fatalf("node 1 sees %d gossip members, want the 5 nodes", raw.GossipAlive)
		}
		ns, _ := c.nodes(1)
		after, _ := c.info(1)
		if len(ns) != 5 || after.Managers != before.Managers {
			t.Fatalf("a rogue gossip member changed the view: %d nodes, %d managers", len(ns), after.Managers)
		}
	})

	t.Run("operator over TCP", func(t *testing.T) {
		dir := filepath.Join(c.dir, "op")
		c.mustCLI(1, "ca", "issue-client", "--out", dir, "--name", "alice")
		for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
			if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v %v", f, st, err)
			}
		}
		run := func(env []string, args ...string) (string, string, error) {
			cmd := exec.Command(swarmletBin, append([]string{"--host", "tcp://" + net.JoinHostPort(c.ip(2), "24240")}, args...)...)
			cmd.Env = append(os.Environ(), env...)
			var o, e bytes.Buffer
			cmd.Stdout, cmd.Stderr = &o, &e
			err := cmd.Run()
			return o.String(), e.String(), err
		}
		if out, errOut, err := run([]string{"SWARMLET_CERT_PATH=" + dir}, "--tlsverify", "node", "ls", "-q"); err != nil || len(strings.Fields(out)) != 5 {
			t.Fatalf("operator with SWARMLET_CERT_PATH and --tlsverify: %v %s %s", err, out, errOut)
		}
		if out, errOut, err := run(nil, "--tlscacert", filepath.Join(dir, "ca.pem"), "--tlscert", filepath.Join(dir, "cert.pem"),
			"--tlskey", filepath.Join(dir, "key.pem"), "service", "ls", "-q"); err != nil || len(strings.Fields(out)) != 1 {
			t.Fatalf("operator with --tlscacert/--tlscert/--tlskey: %v %s %s", err, out, errOut)
		}
		_, errOut, err := run(nil, "node", "ls")
		if err == nil || !strings.Contains(errOut, "ca issue-client") || strings.Count(errOut, "\n") != 1 {
			t.Fatalf("no certificate: want one line naming 'ca issue-client', got %v %q", err, errOut)
		}
		// An operator certificate is a client's only: it opens no Raft connection.
		op, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if err := tlsExchange(c.raftAddr(1), showing(&op)); err == nil {
			t.Fatal("an operator certificate opened a Raft connection")
		}
		if _, err := c.apiAs(1, &op).Assignments(context.Background(), 0, 0); !errors.Is(err, api.ErrForbidden) {
			t.Fatalf("an operator opened a worker session: %v", err)
		}
	})

	t.Run("certificates refused", func(t *testing.T) {
		c.stop(3, syscall.SIGTERM) // SIGTERM: read the CA offline from its data dir, then bring it back
		ca := readCA(t, c.dataDir(3))
		c.start(3, "x")
		other, _ := pki.NewCA("someothercluster", time.Now())
		impostor, _ := pki.NewCA(ca.ClusterID(), time.Now()) // same cluster ID, another root
		expired := mint(t, ca, pki.NodeRequest{NodeID: ids[1], Role: api.RoleManager, Now: time.Now().Add(-72 * time.Hour), Expiry: time.Hour})
		stranger := mint(t, ca, pki.NodeRequest{NodeID: "nosuchnode00", Role: api.RoleManager})
		worker := c.nodeCert(4)
		for _, tc := range []struct {
			name string
			cert tls.Certificate
		}{
			{"another CA", mint(t, other, pki.NodeRequest{NodeID: ids[1], Role: api.RoleManager})},
			{"another root claiming this cluster", mint(t, impostor, pki.NodeRequest{NodeID: ids[1], Role: api.RoleManager})},
			{"expired", expired},
		} {
			wantTLSRefusal(t, tc.name+" on the API", func() error { _, _, err := c.apiAs(1, &tc.cert).Nodes(context.Background()); return err }())
			if err := tlsExchange(c.raftAddr(1), showing(&tc.cert)); err == nil {
				t.Fatalf("%s: opened a Raft connection", tc.name)
			}
		}
		// Of this CA but no member: Raft refuses it in the handshake, the API
		// answers only that it is no member.
		if err := tlsExchange(c.raftAddr(1), showing(&stranger)); err == nil {
			t.Fatal("a manager certificate of a non-member opened a Raft connection")
		}
		if _, _, err := c.apiAs(1, &stranger).Nodes(context.Background()); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("a non-member's certificate on the API: %v", err)
		}
		// A worker's certificate: no Raft, no manager endpoint.
		if err := tlsExchange(c.raftAddr(1), showing(&worker)); err == nil {
			t.Fatal("a worker certificate opened a Raft connection")
		}
		wc := c.apiAs(1, &worker)
		if _, _, err := wc.Nodes(context.Background()); !errors.Is(err, api.ErrForbidden) {
			t.Fatalf("worker on node ls: %v", err)
		}
		if _, err := wc.CreateService(context.Background(), api.ServiceSpec{Name: "evil", Image: "/bin/sh", Command: []string{"-c", "id"}}); !errors.Is(err, api.ErrForbidden) {
			t.Fatalf("worker creating a service: %v", err)
		}
		if _, err := wc.JoinTokens(context.Background()); !errors.Is(err, api.ErrForbidden) {
			t.Fatalf("worker reading join tokens: %v", err)
		}
		// Nor through a worker: it serves its own node only.
		if _, _, err := c.apiAs(4, &worker).Nodes(context.Background()); !errors.Is(err, api.ErrForbidden) {
			t.Fatalf("node ls through a worker: %v", err)
		}
		// The CA key is nowhere on disk in the clear.
		_, keyPEM, _ := ca.MarshalPEM()
		body := bytes.Split(keyPEM, []byte("\n"))[1]
		if hits := grepDataDirs(t, c.dir, body); len(hits) != 0 {
			t.Fatalf("the CA key in the clear in %v", hits)
		}
	})

	t.Run("workers act only for themselves", func(t *testing.T) {
		w4 := c.nodeCert(4)
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: showing(&w4)}}
		req, _ := http.NewRequest(http.MethodGet, "https://"+net.JoinHostPort(c.ip(2), "24240")+"/v1/dispatcher/assignments?node="+ids[5], nil)
		req.Header.Set("X-Swarmlet-Caller", "worker/"+ids[5]) // a worker cannot vouch
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var as api.Assignments
		_ = json.NewDecoder(resp.Body).Decode(&as)
		resp.Body.Close()
		if resp.StatusCode != 200 || as.Node == nil || as.Node.ID != ids[4] {
			t.Fatalf("worker 4 asking for worker 5's session got %d, node %+v", resp.StatusCode, as.Node)
		}
		for _, task := range as.Tasks {
			if task.NodeID != ids[4] {
				t.Fatalf("worker 4 got task %s of node %s", task.ID, task.NodeID)
			}
		}
		ts, err := c.tasks(1, "web")
		if err != nil {
			t.Fatal(err)
		}
		var theirs string
		for _, x := range ts {
			if x.Node == ids[5] && x.Current == "running" {
				theirs = x.ID
			}
		}
		if theirs == "" {
			t.Fatalf("no running task on node 5: %+v", ts)
		}
		err = c.apiAs(2, &w4).ReportStatus(context.Background(), []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: theirs,
			Status: api.TaskStatus{State: api.TaskFailed, Message: "forged", Timestamp: time.Now()}}})
		if !errors.Is(err, api.ErrForbidden) {
			t.Fatalf("worker 4 reporting node 5's task: %v", err)
		}
		if err := c.apiAs(2, &w4).Register(context.Background(), api.Node{ID: ids[5], Addr: "127.66.0.99", APIPort: 1, RaftPort: 1, GossipPort: 1}); !errors.Is(err, api.ErrForbidden) {
			t.Fatalf("worker 4 registering as node 5: %v", err)
		}
		ts, _ = c.tasks(1, "web")
		for _, x := range ts {
			if x.ID == theirs && x.Current != "running" {
				t.Fatalf("node 5's task changed state to %s", x.Current)
			}
		}
	})

	t.Run("join tokens", func(t *testing.T) {
		join := func(tok, addr string) string {
			dir := t.TempDir()
			out, err := exec.Command(swarmletBin, "join", "--token", tok, "--advertise-addr", c.ip(9), "--data-dir", dir,
				"--engine", "process", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", addr).CombinedOutput()
			if err == nil {
				t.Fatalf("join with %q succeeded", tok)
			}
			if _, err := os.Stat(filepath.Join(dir, "node.json")); err == nil {
				t.Fatal("a refused join left an identity behind")
			}
			return string(out)
		}
		digest := mtok[len("SWLT-1-") : len("SWLT-1-")+50]
		if out := join("SWLT-1-"+digest+"-"+strings.Repeat("0", 25), c.ip(1)+":24240"); !strings.Contains(out, "wrong or rotated") {
			t.Fatalf("wrong secret: %s", out)
		}
		old := strings.TrimSpace(c.mustCLI(2, "join-token", "-q", "manager"))
		c.mustCLI(1, "join-token", "--rotate", "manager")
		if out := join(old, c.ip(2)+":24240"); !strings.Contains(out, "wrong or rotated") {
			t.Fatalf("rotated token: %s", out)
		}
		// A manager of another cluster: the join stops in the handshake, before
		// the token is sent.
		o := newClusterSub(t, trustNet, 1)
		o.start(1, "")
		if out := join(wtok, o.ip(1)+":24240"); !strings.Contains(out, "does not hold the CA this join token pins") {
			t.Fatalf("joining another cluster with this cluster's token: %s", out)
		}
		if got := o.log(1); strings.Contains(got, "node joined") || strings.Contains(got, "invalid join token") {
			t.Fatalf("the other cluster's manager saw the join request:\n%s", got)
		}
		// A worker cannot be joined to: it is no manager.
		if out := join(wtok, c.ip(4)+":24240"); !strings.Contains(out, "does not hold the CA") && !strings.Contains(out, "handshake") {
			t.Fatalf("join through a worker: %s", out)
		}
		if ns, _ := c.nodes(1); len(ns) != 5 {
			t.Fatalf("refused joins changed the node list: %d nodes", len(ns))
		}
	})

	t.Run("no plaintext secret in any data dir", func(t *testing.T) {
		if hits := grepDataDirs(t, c.dir, []byte(secret)); len(hits) != 0 {
			t.Fatalf("the service's secret env value is on disk in the clear: %v", hits)
		}
		for _, tok := range []string{mtok, wtok} {
			s := tok[strings.LastIndex(tok, "-")+1:]
			if hits := grepDataDirs(t, c.dir, []byte(s)); len(hits) != 0 {
				t.Fatalf("a join token secret is on disk: %v", hits)
			}
		}
	})

	t.Run("gossip key rotation without a split", func(t *testing.T) {
		keys := func(i int) [][]byte {
			var k [][]byte
			b, _ := os.ReadFile(filepath.Join(c.dataDir(i), "gossip-keys.json"))
			_ = json.Unmarshal(b, &k)
			return k
		}
		old := keys(4)
		if len(old) != 1 {
			t.Fatalf("keyring before: %d keys", len(old))
		}
		stop := make(chan struct{})
		problems := make(chan string, 100)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				for _, i := range []int{1, 4} {
					var raw struct {
						GossipAlive int `json:"gossip_alive"`
					}
					out, _, err := c.cli(i, "info", "--format", "json")
					if err == nil && json.Unmarshal([]byte(out), &raw) == nil && raw.GossipAlive != 5 {
						problems <- fmt.Sprintf("node %d sees %d gossip members", i, raw.GossipAlive)
					}
				}
				if ns, err := c.nodes(1); err == nil {
					for _, n := range ns {
						if n.Status != "ready" {
							problems <- fmt.Sprintf("%s is %s", n.Addr, n.Status)
						}
					}
				}
			}
		}()
		start := time.Now()
		out := c.mustCLI(2, "gossip-key", "--rotate")
		t.Logf("gossip key rotation took %s", time.Since(start))
		if !strings.Contains(out, "Rotated the gossip key") {
			t.Fatalf("gossip-key --rotate: %q", out)
		}
		// Workers keep the keyring plain (managers sealed, see the autolock test).
		for i := 4; i <= 5; i++ {
			waitFor(t, 10*time.Second, fmt.Sprintf("node %d on the new key alone", i), func() bool {
				k := keys(i)
				return len(k) == 1 && !bytes.Equal(k[0], old[0])
			})
		}
		time.Sleep(3 * time.Second) // long enough for a split, had there been one, to show as a failure
		close(stop)
		<-watched
		close(problems)
		for p := range problems {
			t.Error(p)
		}
		g, err := gossip.Start(gossip.Config{Name: "oldkey", BindAddr: "127.66.0.91", SecretKey: old[0]})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Shutdown()
		if n, err := g.Join([]string{c.gossipAddr(1)}); err == nil || n != 0 {
			t.Fatalf("a member with the old key joined: %d %v", n, err)
		}
	})

	t.Run("a removed node is cut off at once", func(t *testing.T) {
		w5 := c.nodeCert(5)
		c.mustCLI(1, "node", "rm", "--force", ids[5])
		waitFor(t, 15*time.Second, "the removed worker stops its task", func() bool {
			return strings.Contains(c.log(5), "this node was removed from the cluster")
		})
		if _, err := c.apiAs(1, &w5).Assignments(context.Background(), 0, 0); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("removed node's certificate: %v", err)
		}
		if !strings.Contains(c.log(1)+c.log(2)+c.log(3), "connection of a removed node closed") {
			t.Fatal("no manager cut the removed node's open connection")
		}
	})
}

// taskPIDs maps the task IDs of a service's live processes to their PIDs.
func taskPIDs(service string) map[string]int {
	out := map[string]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		exe, _ := os.Readlink(filepath.Join(d, "exe"))
		if exe != whoamiBin {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil {
			continue
		}
		var task string
		mine := false
		for _, kv := range strings.Split(string(b), "\x00") {
			mine = mine || kv == "SWARMLET_SERVICE="+service
			if v, ok := strings.CutPrefix(kv, "SWARMLET_TASK_ID="); ok {
				task = v
			}
		}
		if mine && task != "" {
			var pid int
			fmt.Sscan(filepath.Base(d), &pid)
			out[task] = pid
		}
	}
	return out
}

// TestTrustCARotation: a running 3-manager cluster with tasks moves to a new root;
// no task restarts, every node ends on the new root, the old tokens stop working
// and the new ones join.
func TestTrustCARotation(t *testing.T) {
	c := newClusterSub(t, trustNet, 2)
	c.start(1, "")
	mtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager"))
	wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	c.start(2, mtok)
	c.start(3, mtok)
	c.start(4, wtok)
	waitFor(t, 15*time.Second, "3 voters and 4 nodes", func() bool {
		inf, err := c.info(1)
		ns, _ := c.nodes(1)
		return err == nil && inf.Managers == 3 && len(ns) == 4
	})
	c.mustCLI(1, "service", "create", "--name", "rot", "--replicas", "4", "-p", "80", "--restart-delay", "0s", whoamiBin)
	before := taskPIDs("rot")
	if len(before) != 4 {
		t.Fatalf("want 4 task processes, got %v", before)
	}
	opDir := filepath.Join(c.dir, "op")
	c.mustCLI(1, "ca", "issue-client", "--out", opDir)
	oldRoot := c.mustCLI(1, "ca")

	start := time.Now()
	out, errOut, err := c.cli(2, "ca", "--rotate")
	if err != nil {
		t.Fatalf("ca --rotate: %v %s", err, errOut)
	}
	t.Logf("CA rotation of 4 nodes took %s", time.Since(start))
	if out == oldRoot || !strings.Contains(errOut, "CA rotation done") {
		t.Fatalf("ca --rotate printed %q / %q", out, errOut)
	}
	newRoots, err := pki.ParseCertsPEM([]byte(out))
	if err != nil || len(newRoots) != 1 {
		t.Fatalf("new root: %v %d", err, len(newRoots))
	}
	if again := c.mustCLI(3, "ca"); again != out {
		t.Fatal("managers disagree on the root after the rotation")
	}
	// Every node ends on the new root, its chain too (the cross-signed link to the
	// old root goes once the rotation is done).
	for i := 1; i <= 4; i++ {
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d's chain ends at the new root", i), func() bool {
			b, err := os.ReadFile(filepath.Join(c.dataDir(i), "tls", "node.pem"))
			if err != nil {
				return false
			}
			chain, err := pki.ParseChainPEM(b)
			return err == nil && pki.IssuedBy(chain.Leaf(), newRoots[0]) && chain[len(chain)-1].Equal(newRoots[0])
		})
	}
	after := taskPIDs("rot")
	for task, pid := range before {
		if after[task] != pid {
			t.Fatalf("task %s: process %d before the rotation, %d after: a task restarted", task, pid, after[task])
		}
	}
	ts, _ := c.tasks(1, "rot")
	if r := running(t, ts); len(r) != 4 {
		t.Fatalf("%d tasks running after the rotation", len(r))
	}

	// The old tokens pin the old root: refused in the handshake. The new ones join.
	dir := t.TempDir()
	old, _ := exec.Command(swarmletBin, "join", "--token", wtok, "--advertise-addr", c.ip(5), "--data-dir", dir,
		"--engine", "process", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", c.ip(1)+":24240").CombinedOutput()
	if !strings.Contains(string(old), "does not hold the CA this join token pins") {
		t.Fatalf("old token after the rotation: %s", old)
	}
	newTok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	if newTok == wtok {
		t.Fatal("the join token did not change with the root")
	}
	c.start(5, newTok)
	waitFor(t, 15*time.Second, "node 5 ready", func() bool { ns, _ := c.nodes(1); return len(ns) == 5 })
	// Operator certificates of the old root end with it.
	cmd := exec.Command(swarmletBin, "--host", "tcp://"+net.JoinHostPort(c.ip(1), "24240"), "node", "ls")
	cmd.Env = append(os.Environ(), "SWARMLET_CERT_PATH="+opDir)
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("an operator certificate of the old root still works: %s", b)
	}
}

// cliIn runs the CLI against node i with stdin.
func (c *cluster) cliIn(i int, stdin string, args ...string) (string, string, error) {
	cmd := exec.Command(swarmletBin, append([]string{"--host", c.sock(i)}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (c *cluster) locked(i int) bool {
	out, _, err := c.cli(i, "info", "--format", "json")
	var inf struct {
		Locked bool `json:"locked"`
	}
	return err == nil && json.Unmarshal([]byte(out), &inf) == nil && inf.Locked
}

// TestTrustAutolock: with autolock a restarted manager waits for the unlock key,
// refuses a wrong one, and after 'unlock-key --rotate' the old key opens nothing.
func TestTrustAutolock(t *testing.T) {
	c := newClusterSub(t, trustNet, 3)
	c.start(1, "", "--autolock")
	key := ""
	for _, l := range strings.Fields(c.log(1)) {
		if strings.HasPrefix(l, "SWLKEY-1-") {
			key = l
		}
	}
	if key == "" {
		t.Fatalf("init --autolock printed no unlock key:\n%s", c.log(1))
	}
	if got := strings.TrimSpace(c.mustCLI(1, "unlock-key", "-q")); got != key {
		t.Fatalf("unlock-key says %q, init printed %q", got, key)
	}
	c.start(2, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager")))
	waitFor(t, 15*time.Second, "2 voters", func() bool { inf, err := c.info(1); return err == nil && inf.Managers == 2 })
	keyFile := func(i int) string {
		b, _ := os.ReadFile(filepath.Join(c.dataDir(i), "raft", "raft-key.json"))
		return string(b)
	}
	waitFor(t, 10*time.Second, "the joined manager wraps its data key with the unlock key", func() bool {
		return strings.Contains(keyFile(2), `"autolock": true`)
	})
	secret := fmt.Sprintf("autolock-secret-%d", time.Now().UnixNano())
	c.mustCLI(1, "service", "create", "--name", "al", "--replicas", "1", "--env", "TOKEN="+secret, "--detach", whoamiBin)

	c.stop(1, syscall.SIGTERM)
	for _, needle := range []string{secret, key} {
		if hits := grepDataDirs(t, c.dir, []byte(needle)); len(hits) != 0 {
			t.Fatalf("%q is on disk in the clear: %v", needle[:12], hits)
		}
	}
	// A manager's own key and its gossip keyring are sealed with its data key, so
	// autolock guards them too.
	for i := 1; i <= 2; i++ {
		for plain, sealed := range map[string]string{"tls/node-key.pem": "tls/node-key.sealed", "gossip-keys.json": "gossip-keys.sealed"} {
			if _, err := os.Stat(filepath.Join(c.dataDir(i), plain)); err == nil {
				t.Fatalf("manager %d keeps %s in the clear", i, plain)
			}
			if _, err := os.Stat(filepath.Join(c.dataDir(i), sealed)); err != nil {
				t.Fatalf("manager %d has no %s: %v", i, sealed, err)
			}
		}
	}
	if hits := grepDataDirs(t, c.dir, []byte("PRIVATE KEY")); len(hits) != 0 {
		t.Fatalf("a private key in the clear in a manager's data dir: %v", hits)
	}
	c.start(1, "")
	if !c.locked(1) {
		t.Fatal("a restarted autolocked manager is not locked")
	}
	c.expectError(t, 1, "locked", "service", "ls")
	wrong, _ := raftstore.NewUnlockKey()
	if _, errOut, err := c.cliIn(1, wrong+"\n", "unlock"); err == nil || !strings.Contains(errOut, "does not open") {
		t.Fatalf("wrong unlock key: %v %s", err, errOut)
	}
	if !c.locked(1) {
		t.Fatal("a wrong key unlocked the manager")
	}
	if _, errOut, err := c.cliIn(1, key+"\n", "unlock"); err != nil {
		t.Fatalf("unlock: %v %s", err, errOut)
	}
	waitFor(t, 15*time.Second, "the unlocked manager back with its state", func() bool {
		inf, err := c.info(1)
		return err == nil && !c.locked(1) && inf.Managers == 2 && inf.LeaderID != ""
	})
	if out := c.mustCLI(1, "service", "ls", "-q"); len(strings.Fields(out)) != 1 {
		t.Fatalf("state after unlock: %q", out)
	}

	before := keyFile(2)
	rotated := strings.TrimSpace(c.mustCLI(1, "unlock-key", "--rotate", "-q"))
	if rotated == key || !strings.HasPrefix(rotated, "SWLKEY-1-") {
		t.Fatalf("rotated key %q", rotated)
	}
	waitFor(t, 10*time.Second, "manager 2 wraps its data key with the new unlock key", func() bool { return keyFile(2) != before })
	c.stop(2, syscall.SIGTERM)
	c.start(2, "x")
	if _, errOut, err := c.cliIn(2, key+"\n", "unlock"); err == nil || !strings.Contains(errOut, "does not open") {
		t.Fatalf("the old unlock key after rotation: %v %s", err, errOut)
	}
	if _, errOut, err := c.cliIn(2, rotated+"\n", "unlock"); err != nil {
		t.Fatalf("unlock with the rotated key: %v %s", err, errOut)
	}
	waitFor(t, 15*time.Second, "manager 2 unlocked", func() bool {
		inf, err := c.info(2)
		return err == nil && !c.locked(2) && inf.Managers == 2
	})
}
