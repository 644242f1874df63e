package lb

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/ipvs"
)

func k(s string) key {
	proto, ap, _ := strings.Cut(s, "/")
	a := netip.MustParseAddrPort(ap)
	return key{Addr: a.Addr(), Port: a.Port(), Proto: proto}
}

func fe(s string, backends ...string) desiredFE {
	d := desiredFE{Key: k(s), Service: "svc"}
	for _, b := range backends {
		d.Backends = append(d.Backends, netip.MustParseAddrPort(b))
	}
	return d
}

func feSet(fes ...desiredFE) map[key]desiredFE {
	m := map[key]desiredFE{}
	for _, f := range fes {
		m[f.Key] = f
	}
	return m
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		in      Frontend
		v4only  bool
		want    []string // backends after normalisation; nil with wantErr
		wantErr string
	}{
		{name: "sorted and deduplicated", in: Frontend{IP: net.ParseIP("127.128.0.1"), Port: 80, Proto: "TCP",
			Backends: []Backend{{net.ParseIP("10.0.0.2"), 80}, {net.ParseIP("10.0.0.1"), 80}, {net.ParseIP("10.0.0.2"), 80}}},
			want: []string{"10.0.0.1:80", "10.0.0.2:80"}},
		{name: "v4-mapped is v4", in: Frontend{IP: net.ParseIP("::ffff:127.128.0.1"), Port: 53, Proto: "udp"}, v4only: true, want: []string{}},
		{name: "bad proto", in: Frontend{IP: net.ParseIP("127.0.0.1"), Port: 80, Proto: "sctp"}, wantErr: "protocol"},
		{name: "bad port", in: Frontend{IP: net.ParseIP("127.0.0.1"), Port: 70000, Proto: "tcp"}, wantErr: "port"},
		{name: "no ip", in: Frontend{Port: 80, Proto: "tcp"}, wantErr: "invalid IP"},
		{name: "v6 on v4-only", in: Frontend{IP: net.ParseIP("fd00::1"), Port: 80, Proto: "tcp"}, v4only: true, wantErr: "only IPv4"},
		{name: "backend port", in: Frontend{IP: net.ParseIP("127.0.0.1"), Port: 80, Proto: "tcp", Backends: []Backend{{net.ParseIP("10.0.0.1"), 0}}}, wantErr: "port 0"},
		{name: "backend unspecified", in: Frontend{IP: net.ParseIP("127.0.0.1"), Port: 80, Proto: "tcp", Backends: []Backend{{net.IPv4zero, 80}}}, wantErr: "unspecified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := normalizeFrontend(tt.in, tt.v4only)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			var bs []string
			for _, b := range got.Backends {
				bs = append(bs, b.String())
			}
			if !slices.Equal(bs, tt.want) && !(len(bs) == 0 && len(tt.want) == 0) {
				t.Errorf("backends = %v, want %v", bs, tt.want)
			}
		})
	}
}

func TestNormalizeKeepsValidOnError(t *testing.T) {
	tbl := Table{Frontends: []Frontend{
		{Service: "a", IP: net.ParseIP("127.128.0.1"), Port: 80, Proto: "tcp"},
		{Service: "dup", IP: net.ParseIP("127.128.0.1"), Port: 80, Proto: "tcp"},
		{Service: "bad", IP: net.ParseIP("127.128.0.2"), Port: 80, Proto: "icmp"},
		{Service: "b", IP: net.ParseIP("127.128.0.1"), Port: 80, Proto: "udp"},
	}}
	got, err := normalize(tbl, true)
	if err == nil || !strings.Contains(err.Error(), "duplicate") || !strings.Contains(err.Error(), "protocol") {
		t.Errorf("err = %v, want duplicate and protocol errors", err)
	}
	if len(got) != 2 || got[k("tcp/127.128.0.1:80")].Service != "a" {
		t.Errorf("valid frontends = %v, want a and b (first of duplicates wins)", got)
	}
}

func TestPlanFrontends(t *testing.T) {
	fp := func(d desiredFE) string { return usFingerprint(d) }
	web := fe("tcp/127.128.0.1:80", "10.0.0.1:80", "10.0.0.2:80")
	webLess := fe("tcp/127.128.0.1:80", "10.0.0.1:80")
	dns := fe("udp/127.128.0.2:53", "10.0.0.3:53")
	tests := []struct {
		name              string
		desired           map[key]desiredFE
		current           map[key]string
		add, upd, removed []string
	}{
		{name: "empty", desired: feSet(), current: map[key]string{}},
		{name: "all new", desired: feSet(web, dns), current: map[key]string{}, add: []string{"tcp/127.128.0.1:80", "udp/127.128.0.2:53"}},
		{name: "in sync", desired: feSet(web, dns), current: map[key]string{web.Key: fp(web), dns.Key: fp(dns)}},
		{name: "backend removed", desired: feSet(webLess, dns), current: map[key]string{web.Key: fp(web), dns.Key: fp(dns)}, upd: []string{"tcp/127.128.0.1:80"}},
		{name: "frontend removed", desired: feSet(web), current: map[key]string{web.Key: fp(web), dns.Key: fp(dns)}, removed: []string{"udp/127.128.0.2:53"}},
		{name: "broken current repaired", desired: feSet(web), current: map[key]string{web.Key: ""}, upd: []string{"tcp/127.128.0.1:80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planFrontends(tt.desired, tt.current, fp)
			keys := func(ds []desiredFE) (s []string) {
				for _, d := range ds {
					s = append(s, d.Key.String())
				}
				return s
			}
			var rm []string
			for _, k := range p.Remove {
				rm = append(rm, k.String())
			}
			if !slices.Equal(keys(p.Add), tt.add) || !slices.Equal(keys(p.Update), tt.upd) || !slices.Equal(rm, tt.removed) {
				t.Errorf("plan = add %v update %v remove %v; want add %v update %v remove %v",
					keys(p.Add), keys(p.Update), rm, tt.add, tt.upd, tt.removed)
			}
		})
	}
}

func TestPlanIPVS(t *testing.T) {
	svc := func(s, sched string, dests map[string]int) ipvsService {
		is := ipvsService{Key: k(s), Sched: sched, Dests: map[netip.AddrPort]int{}}
		for d, w := range dests {
			is.Dests[netip.MustParseAddrPort(d)] = w
		}
		return is
	}
	cur := func(ss ...ipvsService) map[key]ipvsService {
		m := map[key]ipvsService{}
		for _, s := range ss {
			m[s.Key] = s
		}
		return m
	}
	tests := []struct {
		name    string
		desired map[key]desiredFE
		current map[key]ipvsService
		want    []string
	}{
		{name: "nothing", desired: feSet(), current: cur()},
		{name: "create", desired: feSet(fe("tcp/127.128.0.1:80", "10.0.0.2:80", "10.0.0.1:80")), current: cur(),
			want: []string{"add-service tcp/127.128.0.1:80 rr", "add-dest tcp/127.128.0.1:80 10.0.0.1:80 w=1", "add-dest tcp/127.128.0.1:80 10.0.0.2:80 w=1"}},
		{name: "in sync", desired: feSet(fe("tcp/127.128.0.1:80", "10.0.0.1:80")),
			current: cur(svc("tcp/127.128.0.1:80", "rr", map[string]int{"10.0.0.1:80": 1}))},
		{name: "swap a backend: removal first", desired: feSet(fe("tcp/127.128.0.1:80", "10.0.0.1:80", "10.0.0.3:80")),
			current: cur(svc("tcp/127.128.0.1:80", "rr", map[string]int{"10.0.0.1:80": 1, "10.0.0.2:80": 1})),
			want:    []string{"del-dest tcp/127.128.0.1:80 10.0.0.2:80 w=0", "add-dest tcp/127.128.0.1:80 10.0.0.3:80 w=1"}},
		{name: "drained weight and wrong scheduler fixed", desired: feSet(fe("udp/127.128.0.2:53", "10.0.0.1:53")),
			current: cur(svc("udp/127.128.0.2:53", "wlc", map[string]int{"10.0.0.1:53": 0})),
			want:    []string{"update-service udp/127.128.0.2:53 rr", "update-dest udp/127.128.0.2:53 10.0.0.1:53 w=1"}},
		{name: "service removed, another added", desired: feSet(fe("tcp/127.128.0.5:80")),
			current: cur(svc("tcp/127.128.0.1:80", "rr", map[string]int{"10.0.0.1:80": 1})),
			want:    []string{"del-service tcp/127.128.0.1:80 rr", "add-service tcp/127.128.0.5:80 rr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, op := range planIPVS(tt.desired, tt.current) {
				got = append(got, op.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("plan:\n got  %q\n want %q", got, tt.want)
			}
		})
	}
}

// fakeIPVS is an in-memory IPVS: enough to check Sync end to end, ownership
// and idempotence without the kernel module.
type fakeIPVS struct {
	svcs  map[key]*ipvs.Service
	dests map[key][]*ipvs.Destination
	calls int
}

func (f *fakeIPVS) GetServices() ([]*ipvs.Service, error) {
	var out []*ipvs.Service
	for _, s := range f.svcs {
		out = append(out, s)
	}
	return out, nil
}
func (f *fakeIPVS) GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error) {
	k, _ := ipvsKey(s)
	return f.dests[k], nil
}
func (f *fakeIPVS) NewService(s *ipvs.Service) error {
	f.calls++
	k, _ := ipvsKey(s)
	if _, ok := f.svcs[k]; ok {
		return errors.New("exists")
	}
	f.svcs[k] = s
	return nil
}
func (f *fakeIPVS) UpdateService(s *ipvs.Service) error {
	f.calls++
	k, _ := ipvsKey(s)
	f.svcs[k] = s
	return nil
}
func (f *fakeIPVS) DelService(s *ipvs.Service) error {
	f.calls++
	k, _ := ipvsKey(s)
	delete(f.svcs, k)
	delete(f.dests, k)
	return nil
}
func (f *fakeIPVS) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.calls++
	k, _ := ipvsKey(s)
	f.dests[k] = append(f.dests[k], d)
	return nil
}
func (f *fakeIPVS) UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.calls++
	k, _ := ipvsKey(s)
	for i, x := range f.dests[k] {
		if x.Address.Equal(d.Address) && x.Port == d.Port {
			f.dests[k][i] = d
		}
	}
	return nil
}
func (f *fakeIPVS) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.calls++
	k, _ := ipvsKey(s)
	f.dests[k] = slices.DeleteFunc(f.dests[k], func(x *ipvs.Destination) bool { return x.Address.Equal(d.Address) && x.Port == d.Port })
	return nil
}

func TestIPVSSyncWithFake(t *testing.T) {
	foreign := &ipvs.Service{Address: net.ParseIP("10.9.9.9").To4(), Protocol: 6, Port: 80, SchedName: "wlc", AddressFamily: 2, Netmask: 0xffffffff}
	f := &fakeIPVS{svcs: map[key]*ipvs.Service{k("tcp/10.9.9.9:80"): foreign}, dests: map[key][]*ipvs.Destination{}}
	b := &ipvsBalancer{log: testLogger(t), h: f}
	ctx := context.Background()
	tbl := vipTable("127.128.0.1", 80, "10.0.0.1:80", "10.0.0.2:80")
	if err := b.Sync(ctx, tbl); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if f.calls != 3 {
		t.Errorf("first Sync made %d calls, want 3 (service + 2 destinations)", f.calls)
	}
	f.calls = 0
	if err := b.Sync(ctx, tbl); err != nil || f.calls != 0 {
		t.Errorf("second Sync: err %v, %d calls; want none", err, f.calls)
	}
	if err := b.Sync(ctx, vipTable("127.128.0.1", 80, "10.0.0.2:80")); err != nil || f.calls != 1 {
		t.Errorf("removing a backend: err %v, %d calls; want 1", err, f.calls)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, ok := f.svcs[k("tcp/10.9.9.9:80")]; !ok || len(f.svcs) != 1 {
		t.Errorf("after Close services = %v; want only the foreign one left", f.svcs)
	}
}

func TestDetectAndNew(t *testing.T) {
	saved := procIPVS
	t.Cleanup(func() { procIPVS = saved })

	procIPVS = filepath.Join(t.TempDir(), "absent")
	if _, err := New(KindIPVS, Config{}); !errors.Is(err, ErrIPVSUnavailable) {
		t.Errorf("New(ipvs) without IPVS: err = %v, want ErrIPVSUnavailable", err)
	}
	want := KindUserspace
	if os.Geteuid() == 0 {
		want = KindNftables // nf_tables answers for root on this kernel
	}
	if got := Detect(); got != want {
		t.Errorf("Detect() without IPVS = %q, want %q", got, want)
	}

	procIPVS = filepath.Join(t.TempDir(), "ip_vs")
	if err := os.WriteFile(procIPVS, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Detect(); got != KindIPVS {
		t.Errorf("Detect() with %s present = %q, want ipvs", procIPVS, got)
	}

	if _, err := New("bogus", Config{}); err == nil {
		t.Errorf("New(bogus) succeeded")
	}
	b, err := New(KindUserspace, Config{})
	if err != nil || b.Name() != KindUserspace {
		t.Fatalf("New(userspace) = %v, %v", b, err)
	}
	b.Close()
}
