"""Soak (label `slow`): many requests with random disconnects and malformed bodies mixed in.
Afterwards the server must be alive, hold no sequence or KV cell, and its counters must
agree with what the clients saw."""
import json
import os
import random
import socket
import threading
import time
import unittest

from harness import Server

ROUNDS = int(os.environ.get("EMBER_SOAK_ROUNDS", "40"))  # per client thread
THREADS = 12


class ChaosTest(unittest.TestCase):
    def test_random_cancels_and_bad_requests_leave_nothing_behind(self):
        server = Server("--parallel", "8", "--ctx-size", "4096", "--queue-size", "16")
        try:
            ok, rejected, failures = [0], [0], []
            lock = threading.Lock()

            def disconnect_mid_request(rnd):
                s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                body = json.dumps({"prompt": "Once upon a time", "max_tokens": 200,
                                   "stream": rnd.random() < 0.5}).encode()
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                          str(len(body)).encode() + b"\r\n\r\n" + body)
                time.sleep(rnd.random() * 0.05)
                s.close()

            def worker(seed):
                rnd = random.Random(seed)
                for _ in range(ROUNDS):
                    kind = rnd.random()
                    if kind < 0.2:
                        status = server.post("/v1/completions", b'{"prompt": 5}')[0]
                        if status != 400:
                            with lock:
                                failures.append(("bad request got", status))
                    elif kind < 0.5:
                        disconnect_mid_request(rnd)
                    else:
                        status, data, _ = server.post(
                            "/v1/completions",
                            {"prompt": "The dog", "max_tokens": rnd.randint(1, 60)})
                        with lock:
                            if status == 200:
                                ok[0] += 1
                            elif status == 429:
                                rejected[0] += 1
                            else:
                                failures.append((status, data[:200]))

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(failures, [])
            self.assertIsNone(server.proc.poll(), "server died")
            self.assertTrue(server.wait_metric("ember_num_requests_running", 0))
            self.assertEqual(server.metric("ember_num_requests_waiting"), 0)
            self.assertEqual(server.metric("ember_kv_cache_usage_perc"), 0)
            finished_ok = (server.metric("ember_request_success_total",
                                         {"finished_reason": "stop"}) or 0) + \
                          (server.metric("ember_request_success_total",
                                         {"finished_reason": "length"}) or 0)
            self.assertEqual(finished_ok, ok[0])
            self.assertEqual(server.metric("ember_requests_rejected_total",
                                           {"reason": "queue_full"}) or 0, rejected[0])
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()
