#!/bin/bash
# usage: run3.sh MODE N  — starts Envoy with boot3 MODE, sends N requests, prints results, kills Envoy.
m=$1; N=${2:-20}
read P BE AD < <(python3 -c 'import socket
ps=[]
for _ in range(3):
  s=socket.socket(); s.bind(("127.0.0.1",0)); ps.append(s)
print(*[s.getsockname()[1] for s in ps])')
python3 ${RSX:-/tmp/rsx}/boot3.py $m $P $BE $AD > ${RSX:-/tmp/rsx}/r-$m.json
ENVOY_DYNAMIC_MODULES_SEARCH_PATH=${RSX:-/tmp/rsx}/dm "$(bash scripts/envoy-path.sh)" -c ${RSX:-/tmp/rsx}/r-$m.json --disable-hot-restart --concurrency 1 -l info > ${RSX:-/tmp/rsx}/r-$m.log 2>&1 &
pid=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:$AD/ready >/dev/null && break; sleep 0.2; done
echo "== $m (pid $pid) ready=$(curl -s http://127.0.0.1:$AD/ready)"
for i in $(seq $N); do curl -m 4 -s -o /dev/null -w "%{http_code} %{time_total}s\n" http://127.0.0.1:$P/cart; done | awk "{printf \"%s %.1fs\\n\", \$1, \$2}" | sort | uniq -c
curl -s http://127.0.0.1:$AD/stats | grep -E "^cluster\.inbound-vip.*\.(upstream_rq_retry|upstream_rq_retry_success|upstream_rq_total|upstream_rq_503|upstream_rq_200|upstream_rq_completed|retry_or_shadow_abandoned|upstream_rq_retry_limit_exceeded|upstream_rq_per_try_timeout|upstream_rq_timeout|upstream_rq_504|upstream_rq_rx_reset|upstream_rq_tx_reset|upstream_cx_total):" | sed 's/cluster.inbound-vip|8080|http|cartservice.shop.svc.cluster.local.//'
echo "filter calls: wasm=$(grep -ac "probe: ABORT-CALL\|: PAUSE-CALL\|: RESET-CALL\|: STATUSRW-RSP" ${RSX:-/tmp/rsx}/r-$m.log | head -1) dm=$(grep -ac "DMABORT-CALL\|DMSTATUSRW ok=true" ${RSX:-/tmp/rsx}/r-$m.log)"
kill $pid; wait $pid 2>/dev/null
