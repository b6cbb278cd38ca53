#!/usr/bin/env python3
"""A consumer group member in plain HTTP and JSON (Python's standard library only).

Usage: group_member.py BASE_URL GROUP TOPIC SECONDS

Joins GROUP subscribed to TOPIC, polls with auto-commit (each poll commits what the previous one
returned) for SECONDS, prints one line per record ("record PARTITION OFFSET VALUE"), then its last
assignment ("assignment P P ...") and leaves the group.
"""
import json
import sys
import time
import urllib.error
import urllib.request


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("accept", "application/json")
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def main():
    base, group, topic, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    member = call("POST", f"{base}/v1/groups/{group}/members", {"topics": [topic], "sessionTimeoutMs": 5000})
    member_id, epoch = member["memberId"], member["memberEpoch"]
    assignment = member["assignment"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            poll = call("GET", f"{base}/v1/groups/{group}/members/{member_id}/records"
                        f"?memberEpoch={epoch}&maxWaitMs=200&autoCommit=true")
        except urllib.error.HTTPError as error:
            problem = json.loads(error.read() or b"{}")
            if problem.get("code") == "FENCED_MEMBER_EPOCH":
                epoch = problem.get("memberEpoch", epoch)
                continue
            raise
        epoch = poll["memberEpoch"]
        assignment = poll["assignment"]
        for record in poll["records"]:
            print("record", record["partition"], record["offset"], record["value"], flush=True)
    print("assignment", *sorted(tp["partition"] for tp in assignment), flush=True)
    call("DELETE", f"{base}/v1/groups/{group}/members/{member_id}")


if __name__ == "__main__":
    main()
