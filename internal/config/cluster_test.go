package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const clusterLake = "lake:\n  warehouse: s3://lake/pulselake\n  catalog: {type: rest, uri: http://catalog:8181}\n"

func TestClusterValidation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string
		enabled bool
		want    map[string]int // problem path → line (0: any line)
	}{
		{name: "three routes including its own", enabled: true,
			yaml: "cluster:\n  listen: 127.0.0.1:6222\n  routes: [nats://127.0.0.1:6222, nats://127.0.0.1:6223, nats://127.0.0.1:6224]\n" + clusterLake},
		{name: "two peers besides itself make three nodes", enabled: true,
			yaml: "cluster:\n  listen: 0.0.0.0:6222\n  advertise: node-a:6222\n  routes: [nats://node-b:6222, nats://node-c:6222]\n  secret: 0123456789abcdef\n" + clusterLake},
		{name: "PostgreSQL catalog", enabled: true,
			yaml: "cluster:\n  routes: [nats://a:6222, nats://b:6222, nats://c:6222]\n  insecure: true\nlake:\n  warehouse: s3://lake/x\n  catalog: {type: sql, driver: postgres, dsn: \"postgres://u@db/pl\"}\n"},
		{name: "section without --cluster is checked but not required", enabled: false,
			yaml: "cluster:\n  routes: [nats://node-a:6222]\n  insecure: true\n"},
		{name: "replicas above the nodes", enabled: true,
			yaml: "cluster:\n  listen: 127.0.0.1:6222\n  replicas: 3\n  routes: [nats://127.0.0.1:6222, nats://127.0.0.1:6223]\n" + clusterLake,
			want: map[string]int{"cluster.replicas": 3}},
		{name: "no routes", enabled: true, yaml: "cluster:\n  name: ward\n  listen: 127.0.0.1:6222\n" + clusterLake,
			want: map[string]int{"cluster.routes": 0}},
		{name: "bad route, duplicate route, port 0, bad ttl", enabled: true,
			yaml: "cluster:\n  listen: 0.0.0.0:0\n  lease_ttl: 1s\n  routes: [http://a:6222, nats://b:6222, nats://b:6222]\n" + clusterLake,
			want: map[string]int{"cluster.listen": 2, "cluster.lease_ttl": 3, "cluster.routes[0]": 4, "cluster.routes[2]": 4}},
		{name: "external NATS and a node-local lake", enabled: true,
			yaml: "nats:\n  url: nats://elsewhere:4222\ncluster:\n  routes: [nats://a:6222, nats://b:6222, nats://c:6222]\n  secret: 0123456789abcdef\n",
			want: map[string]int{"nats.url": 0, "lake.warehouse": 0, "lake.catalog": 0}},
		{name: "bad name", enabled: false, yaml: "cluster:\n  name: my cluster\n  replicas: 7\n",
			want: map[string]int{"cluster.name": 2, "cluster.replicas": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(write(t, tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			c.Cluster.Enabled = tc.enabled
			err = c.Validate()
			wantProblemsAt(t, err, tc.want)
		})
	}
}

func TestClusterDefaults(t *testing.T) {
	c, err := Load(write(t, "cluster:\n  listen: 10.0.0.5:7222\n"))
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Cluster
	if cl.Name != "pulselake" || cl.Replicas != 3 || cl.LeaseTTL.D() != 30*time.Second || cl.SyncAlways || cl.Enabled {
		t.Errorf("defaults: %+v", cl)
	}
	if !strings.HasSuffix(cl.Node(), "-7222") {
		t.Errorf("node name %q, want <hostname>-7222", cl.Node())
	}
	if _, err := Load(write(t, "cluster:\n  enabled: true\n")); err == nil || !strings.Contains(err.Error(), "enabled") {
		t.Errorf("enabled is not a key of the file (it is the --cluster flag); got %v", err)
	}
}

// wantProblemsAt fails t unless err holds Problems at exactly the paths of want, each at its
// line (0: any line).
func wantProblemsAt(t *testing.T, err error, want map[string]int) {
	t.Helper()
	var ps Problems
	if err != nil && !errors.As(err, &ps) {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, p := range ps {
		got[p.Path] = p.Line
	}
	for path, line := range want {
		l, ok := got[path]
		if !ok {
			t.Errorf("no problem at %s; got %v", path, err)
		} else if line != 0 && l != line {
			t.Errorf("%s at line %d, want %d", path, l, line)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("unexpected problem at %s: %v", path, err)
		}
	}
}
