# Helpers shared by the benchmark scripts (compare.sh, cluster.sh, coldload.sh); sourced.

# A TCP port free on 127.0.0.1 right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for_port PORT: succeeds once something listens on 127.0.0.1:PORT; fails after 10 s.
wait_for_port() {
  for _ in $(seq 200); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
