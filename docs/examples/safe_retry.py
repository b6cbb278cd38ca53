"""A safe retry from Python: an idempotent producer over plain HTTP (httpx, any HTTP/2 or 1.1 client).

    /usr/bin/python3 docs/examples/safe_retry.py http://localhost:8092 events 0

Gets a producer id, then sends numbered requests to one partition. A request whose outcome is
unknown (a timeout, a dropped connection, a 5xx) is sent again unchanged, with the same sequence
number, until it is answered: the broker appends it once and answers a retry with the offsets of
the first try. Prints each request's first offset and whether it was a retry the broker had.
"""
import sys

import httpx

base, topic, partition = sys.argv[1], sys.argv[2], int(sys.argv[3])
with httpx.Client(base_url=base, timeout=10.0) as c:
    producer = c.post("/v1/producers").json()
    sequence = 0

    def send(values, attempts=10):
        headers = {
            "sluice-producer-id": str(producer["producerId"]),
            "sluice-producer-epoch": str(producer["producerEpoch"]),
            "sluice-sequence": str(sequence),
        }
        body = {"records": [{"value": v} for v in values]}
        for attempt in range(attempts):
            try:
                r = c.post(f"/v1/topics/{topic}/partitions/{partition}/records?acks=all", json=body, headers=headers)
            except httpx.TransportError:
                continue  # unknown outcome: the same request again
            if r.status_code >= 500:
                continue  # retriable (no leader, timed out): the same request again
            r.raise_for_status()  # 4xx: a definite refusal, nothing appended
            return r.json()
        raise RuntimeError("gave up")

    for values in (["a", "b"], ["c"]):
        answer = send(values)
        # Pretend the answer was lost and send the same request again: it lands once.
        again = send(values)
        print(answer["offsets"][0]["offset"], again["offsets"][0]["offset"], again.get("duplicate", False))
        sequence += len(values)
