import json
import os

from flask import Flask, jsonify, request

from vow import RedisStore, Scheduler

app = Flask(__name__)
store = RedisStore(url=os.environ.get("VOW_REDIS_URL", "redis://localhost:6379"))
resonate = Scheduler(store)

@app.route("/confirm", methods=["POST"])
def start_workflow_route_handler():
    global store
    try:
        data = request.get_json()
        if "email" not in data:
            return jsonify({"error": "email param is required"}), 400
        email = data["email"]
        store.resolve(
            promise_id=f"email-confirmed-{email}",
            ikey=None,
            strict=False,
            headers=None,
            data=json.dumps(True),
        )
        return jsonify({"message": f"Email {email} confirmed."}), 200
    except Exception as e:
        return jsonify({"error": str(e)}), 500


def main() -> None:
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", 5001)))


if __name__ == "__main__":
    main()
