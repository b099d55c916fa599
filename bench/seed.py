#!/usr/bin/env python3
"""Creates users 1..N and products 1..N (with a stock no benchmark exhausts) through a target's
REST API; idempotent, so it can run again on seeded data.

Usage: bench/seed.py BASE_URL [N]    (N defaults to 1000)"""
import http.client
import json
import sys
import threading
from urllib.parse import urlparse

STOCK = 1_000_000_000


def seed(base, ids):
    connection = http.client.HTTPConnection(base.hostname, base.port, timeout=30)

    def post(path, body):
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status

    for i in ids:
        post("/user", {"command": "create", "id": i, "username": f"s{i}", "email": f"s{i}@x.org", "password": f"p{i}"})
        product = {"command": "create", "id": i, "name": f"item{i}", "description": "seeded", "price": 9.5, "quantity": STOCK}
        if post("/product", product) != 200:
            post("/product", {"command": "update", "id": i, "quantity": STOCK})


def main():
    base = urlparse(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    workers = [threading.Thread(target=seed, args=(base, range(k + 1, n + 1, 8))) for k in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(f"seeded {n} users and products at {sys.argv[1]}")


if __name__ == "__main__":
    main()
