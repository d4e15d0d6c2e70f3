#!/usr/bin/env bash
# Project quickstart against a running `computalot up` (TOKEN from .computalot/admin_key).
set -euo pipefail
U=${COMPUTALOT_URL:-http://127.0.0.1:8000}
TOKEN=${TOKEN:-$(cat .computalot/admin_key)}
work=$(mktemp -d)
cat > "$work/script.py" <<'PY'
import json, os
payload = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
print('COMPUTALOT_PROGRESS:{"stage": "scored"}')
json.dump({"score": len(str(payload)), "model": payload.get("models")}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
PY
tar czf "$work/code.tar.gz" -C "$work" script.py
name="quickstart-$RANDOM"
curl -sS -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  "$U/api/v1/projects" -d "{\"name\": \"$name\"}"; echo
curl -sS -X POST -H "Authorization: Bearer $TOKEN" --data-binary @"$work/code.tar.gz" \
  "$U/api/v1/projects/$name/push"; echo
job=$(curl -sS -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" "$U/api/v1/jobs" \
  -d "{\"project\": \"$name\", \"runner_command\": [\"python3\", \"script.py\"], \"fan_out\": {\"by\": \"models\"}, \"payload\": {\"models\": [\"a\", \"bb\", \"ccc\"]}, \"merge_strategy\": \"keyed\"}")
id=$(echo "$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sS -N -H "Authorization: Bearer $TOKEN" "$U/api/v1/jobs/$id/stream" | sed -n '/event: end/q;p'
curl -sS -H "Authorization: Bearer $TOKEN" "$U/api/v1/results/$id"; echo
