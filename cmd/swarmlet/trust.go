package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/node/pki"
)

// The trust commands (ca, unlock, unlock-key) and the TLS an operator's CLI speaks
// on tcp:// hosts, with docker's spellings.

// tlsFlags are the global TLS flags; SWARMLET_CERT_PATH names a directory with
// ca.pem, cert.pem and key.pem (what 'swarmlet ca issue-client --out' writes), as
// DOCKER_CERT_PATH does, and SWARMLET_TLS_VERIFY=1 is --tlsverify.
type tlsFlags struct {
	verify        bool
	ca, cert, key string
}

func (t *tlsFlags) register(c *cobra.Command) {
	f := c.PersistentFlags()
	f.BoolVar(&t.verify, "tlsverify", os.Getenv("SWARMLET_TLS_VERIFY") != "", "verify the daemon's certificate and host name (env SWARMLET_TLS_VERIFY)")
	f.StringVar(&t.ca, "tlscacert", "", "the cluster's CA certificate (default: $SWARMLET_CERT_PATH/ca.pem)")
	f.StringVar(&t.cert, "tlscert", "", "an operator certificate from 'swarmlet ca issue-client' (default: $SWARMLET_CERT_PATH/cert.pem)")
	f.StringVar(&t.key, "tlskey", "", "the operator certificate's key (default: $SWARMLET_CERT_PATH/key.pem)")
}

// config is the client TLS for a tcp:// host: an operator certificate, and the
// daemon verified against the cluster's CA (its host name too with --tlsverify).
func (t *tlsFlags) config() (*tls.Config, error) {
	dir := os.Getenv("SWARMLET_CERT_PATH")
	pick := func(flag, name string) string {
		if flag != "" || dir == "" {
			return flag
		}
		return filepath.Join(dir, name)
	}
	caPath, certPath, keyPath := pick(t.ca, "ca.pem"), pick(t.cert, "cert.pem"), pick(t.key, "key.pem")
	if certPath == "" || keyPath == "" || caPath == "" {
		return nil, errors.New("the API on tcp:// admits only clients with a certificate of the cluster: give --tlscacert, --tlscert and --tlskey, or SWARMLET_CERT_PATH=DIR (make them with 'swarmlet ca issue-client --out DIR' on a manager)")
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("load the operator certificate: %w", err)
	}
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("read the CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caPath)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}, RootCAs: pool}
	if !t.verify {
		// Without --tlsverify the daemon's host name is not checked (an address
		// that is not in its certificate works), but its chain still is: the CLI
		// talks only to a node of the cluster its CA certificate names.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the daemon showed no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		}
	}
	return cfg, nil
}

func newCACmd() *cobra.Command {
	var rotate, detach, quiet bool
	c := &cobra.Command{
		Use:   "ca [--rotate [--detach]] [-q]",
		Short: "Show the cluster's root CA certificate, or replace it (cross-signed: no node loses trust, no task restarts)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			var info api.CAInfo
			if rotate {
				info, err = retryRefused(ctx, func(ctx context.Context) (api.CAInfo, error) { return cl.RotateCA(ctx) })
				if err == nil && !detach {
					info, err = waitRotation(ctx, c, cl, quiet)
				}
			} else {
				info, err = cl.CA(ctx)
			}
			if err != nil {
				return err
			}
			if !quiet && info.Rotating {
				fmt.Fprintf(c.ErrOrStderr(), "CA rotation under way: %d node(s) still on the old root (down nodes must come back or be removed).\n", len(info.Pending))
			}
			fmt.Fprint(c.OutOrStdout(), info.CA)
			return nil
		},
	}
	c.Flags().BoolVar(&rotate, "rotate", false, "replace the root CA (new join tokens; operator certificates must be issued again)")
	c.Flags().BoolVarP(&detach, "detach", "d", false, "with --rotate: do not wait for the rotation to finish")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress output")
	c.AddCommand(newIssueClientCmd())
	return c
}

// waitRotation waits for every node to move to the new root.
func waitRotation(ctx context.Context, c *cobra.Command, cl *client.Client, quiet bool) (api.CAInfo, error) {
	last := -1
	for {
		info, err := cl.CA(ctx)
		if err != nil && !errors.Is(err, api.ErrNotLeader) {
			return info, err
		}
		if err == nil && !info.Rotating {
			if !quiet {
				fmt.Fprintln(c.ErrOrStderr(), "CA rotation done: every node holds a certificate of the new root.")
			}
			return info, nil
		}
		if err == nil && !quiet && len(info.Pending) != last {
			last = len(info.Pending)
			fmt.Fprintf(c.ErrOrStderr(), "rotating: %d node(s) to move to the new root\n", last)
		}
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func newIssueClientCmd() *cobra.Command {
	var out, name string
	c := &cobra.Command{
		Use:   "issue-client --out DIR [--name NAME]",
		Short: "Issue an operator certificate for the API on TCP (writes DIR/ca.pem, cert.pem, key.pem; use with SWARMLET_CERT_PATH=DIR)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("issue-client needs --out DIR")
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			key, csr, err := pki.NewCSR()
			if err != nil {
				return err
			}
			resp, err := retryRefused(ctx, func(ctx context.Context) (api.CertificateResponse, error) { return cl.IssueClient(ctx, name, csr) })
			if err != nil {
				return err
			}
			keyPEM, err := pki.EncodeKeyPEM(key)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", out, err)
			}
			for file, b := range map[string][]byte{"ca.pem": []byte(resp.CA), "cert.pem": []byte(resp.Certificate), "key.pem": keyPEM} {
				if err := os.WriteFile(filepath.Join(out, file), b, 0o600); err != nil {
					return fmt.Errorf("write %s: %w", file, err)
				}
			}
			fmt.Fprintf(c.OutOrStdout(), "Wrote %s/ca.pem, cert.pem and key.pem. Use them with:\n\n    SWARMLET_CERT_PATH=%s swarmlet --host tcp://MANAGER:4240 --tlsverify ...\n\n", out, out)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "directory to write ca.pem, cert.pem and key.pem to")
	c.Flags().StringVar(&name, "name", "operator", "the operator's name in the certificate")
	return c
}

func newUnlockCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unlock",
		Short: "Give a restarted autolocked manager the cluster's unlock key (read from stdin or a prompt)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			key, err := readSecret(c, "Enter unlock key: ")
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			return cl.Unlock(ctx, key)
		},
	}
}

// readSecret reads one line: from a prompt without echo on a terminal, else stdin.
func readSecret(c *cobra.Command, prompt string) (string, error) {
	in := c.InOrStdin()
	if f, ok := in.(*os.File); ok {
		if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			fmt.Fprint(c.ErrOrStderr(), prompt)
			quiet := *t
			quiet.Lflag &^= unix.ECHO
			_ = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &quiet)
			defer func() {
				_ = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
				fmt.Fprintln(c.ErrOrStderr())
			}()
		}
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("read the unlock key: %w", err)
	}
	return strings.TrimSpace(line), nil
}

func newUnlockKeyCmd() *cobra.Command {
	var quiet, rotate bool
	c := &cobra.Command{
		Use:   "unlock-key [-q] [--rotate]",
		Short: "Show or rotate the key that unlocks autolocked managers",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			var k api.UnlockKey
			if rotate {
				k, err = retryRefused(ctx, func(ctx context.Context) (api.UnlockKey, error) { return cl.RotateUnlockKey(ctx) })
			} else {
				k, err = cl.UnlockKey(ctx)
			}
			if err != nil {
				return err
			}
			if k.Key == "" {
				return errors.New("autolock is off in this cluster: there is no unlock key (it is turned on at 'swarmlet init --autolock')")
			}
			if quiet {
				fmt.Fprintln(c.OutOrStdout(), k.Key)
				return nil
			}
			if rotate {
				fmt.Fprintln(c.OutOrStdout(), "Rotated the unlock key; the old one no longer opens any manager.")
			}
			fmt.Fprintf(c.OutOrStdout(), "To unlock a swarmlet manager after it restarts, run 'swarmlet unlock' and give it this key:\n\n    %s\n\n", k.Key)
			return nil
		},
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the key only")
	c.Flags().BoolVar(&rotate, "rotate", false, "replace the key")
	return c
}

func newGossipKeyCmd() *cobra.Command {
	var rotate, detach bool
	c := &cobra.Command{
		Use:   "gossip-key [--rotate [--detach]]",
		Short: "Show the gossip keyring's state, or replace its key (in steps: no member is cut off)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			var info api.GossipKeyInfo
			if rotate {
				if info, err = retryRefused(ctx, func(ctx context.Context) (api.GossipKeyInfo, error) { return cl.RotateGossipKey(ctx) }); err != nil {
					return err
				}
				for !detach && info.Phase != 0 {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(300 * time.Millisecond):
					}
					if next, err := cl.GossipKey(ctx); err == nil {
						info = next
					} else if !errors.Is(err, api.ErrNotLeader) {
						return err
					}
				}
				if !detach {
					fmt.Fprintln(c.OutOrStdout(), "Rotated the gossip key; the old one no longer opens gossip.")
					return nil
				}
			} else if info, err = cl.GossipKey(ctx); err != nil {
				return err
			}
			state := "steady"
			if info.Phase != 0 {
				state = fmt.Sprintf("rotating (step %d of 2)", info.Phase)
			}
			fmt.Fprintf(c.OutOrStdout(), "Gossip keyring: %d key(s), %s.\n", info.Keys, state)
			return nil
		},
	}
	c.Flags().BoolVar(&rotate, "rotate", false, "replace the gossip key")
	c.Flags().BoolVarP(&detach, "detach", "d", false, "with --rotate: do not wait for the rotation to finish")
	return c
}
