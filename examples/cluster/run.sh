#!/usr/bin/env bash
# Starts a three-node pulselake cluster on this machine: PostgreSQL (the Iceberg catalog),
# versitygw (S3 for the lake) and three `pulselake serve --cluster` nodes on loopback ports
# (node-a/b/c.yaml: HTTP 8080-8082, MQTT 1883-1885, routes 6222-6224 with mutual TLS and a
# secret). Ctrl-C stops them all.
# Needs: pulselake (or PULSELAKE=/path/to/pulselake), openssl, versitygw
# (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0) and the PostgreSQL server
# (Debian: apt-get install postgresql). State is kept under ./work; delete it to start afresh.
set -euo pipefail
cd "$(dirname "$0")"
PULSELAKE=${PULSELAKE:-pulselake}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
PGPORT=5439
mkdir -p work
WORK=$(cd work && pwd)
pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# PostgreSQL refuses to run as root: run it as the user postgres then.
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
if [ ! -d "$WORK/pg" ]; then
  mkdir -p "$WORK/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres "$WORK/pg"; fi
  echo pulselake-example > "$WORK/pg.pw"; chmod 644 "$WORK/pg.pw"
  "${as_pg[@]}" "$PGBIN/initdb" -D "$WORK/pg/data" -U pulselake --pwfile="$WORK/pg.pw" --auth=scram-sha-256 >/dev/null
fi
"${as_pg[@]}" "$PGBIN/postgres" -D "$WORK/pg/data" -h 127.0.0.1 -p $PGPORT -k '' >"$WORK/postgres.log" 2>&1 &
pids+=($!)
echo "postgres://pulselake:pulselake-example@127.0.0.1:$PGPORT/postgres?sslmode=disable" > "$WORK/catalog.dsn"
chmod 600 "$WORK/catalog.dsn"

# A throwaway CA, a route certificate per node (for 127.0.0.1, where the others dial it) and
# the routes' secret (docs/scale-out.md, Security, does the same for three machines).
if [ ! -f "$WORK/tls/cluster.secret" ]; then
  mkdir -p "$WORK/tls"
  (
    cd "$WORK/tls"
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
      -subj "/CN=pulselake example cluster CA" -keyout ca.key -out ca.crt
    for n in node-a node-b node-c; do
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$n" -keyout $n.key -out $n.csr
      openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -out $n.crt \
        -extfile <(printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n')
      rm $n.csr
    done
    openssl rand -hex 32 > cluster.secret
  ) >"$WORK/openssl.log" 2>&1 || { cat "$WORK/openssl.log"; rm -rf "$WORK/tls"; exit 1; }
fi

mkdir -p "$WORK/s3/pulselake"   # the bucket is a directory of the POSIX backend
versitygw --access pulselake-example --secret pulselake-example-secret --port 127.0.0.1:7070 posix "$WORK/s3" >"$WORK/versitygw.log" 2>&1 &
pids+=($!)

for i in $(seq 50); do
  "${as_pg[@]}" "$PGBIN/pg_isready" -h 127.0.0.1 -p $PGPORT -q && break
  sleep 0.2
done

# The nodes wait for each other (a majority elects the JetStream leader), so start them together.
export PULSELAKE_ADMIN_TOKEN=${PULSELAKE_ADMIN_TOKEN:-plk_example-cluster-admin-token-0123456789}
for n in a b c; do
  "$PULSELAKE" serve --cluster --data "$WORK/node-$n" --config node-$n.yaml >"$WORK/node-$n.log" 2>&1 &
  pids+=($!)
done
for port in 8080 8081 8082; do
  until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.5; done
done
cat <<MSG
Three nodes are ready (logs in $WORK/node-*.log):
  HTTP  http://127.0.0.1:8080  http://127.0.0.1:8081  http://127.0.0.1:8082
  MQTT  127.0.0.1:1883  127.0.0.1:1884  127.0.0.1:1885
  admin token: $PULSELAKE_ADMIN_TOKEN
Try:
  $PULSELAKE simulate hr --target http://127.0.0.1:8081 --token \$PULSELAKE_ADMIN_TOKEN --devices 100 --rate 1000 --duration 30s
  $PULSELAKE query --server http://127.0.0.1:8082 --token \$PULSELAKE_ADMIN_TOKEN "SELECT count(*) FROM heart_rate"
  kill -9 one node's pid (pgrep -f 'node-b.yaml') and watch the others go on.
Ctrl-C stops everything.
MSG
wait
