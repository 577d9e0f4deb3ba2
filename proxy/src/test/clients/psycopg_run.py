"""ClientDriversIT's psycopg 3 run: CONNS connections at once, each READS parameterised reads
(psycopg prepares a statement under its own name from the second execution on, prepare_threshold=1)
and UPDATES single-statement transactions. Prints one JSON object: wrong answers (first 20), how many.

usage: psycopg_run.py PORT CONNS READS UPDATES
"""
import json
import sys
import threading

import psycopg

port, conns, reads, updates = (int(a) for a in sys.argv[1:5])
wrong = []
lock = threading.Lock()


def note(text):
    with lock:
        wrong.append(text)


def run(i):
    try:
        with psycopg.connect(host="127.0.0.1", port=port, dbname="drivers", user="postgres",
                             password="postgres", autocommit=True, prepare_threshold=1) as c:
            for q in range(reads):
                row = (i * 7 + q) % 100 + 1
                asked = f"p{i}q{q}"
                expected = f"{asked}:owner-{row}"
                got = c.execute("SELECT %s::text || ':' || owner FROM accounts WHERE id = %s",
                                (asked, row)).fetchall()
                if got != [(expected,)]:
                    note(f"asked {expected}, got {got}")
            for u in range(updates):
                with c.transaction():
                    c.execute("UPDATE accounts SET balance = balance + 1 WHERE id = %s",
                              ((i * 13 + u) % 100 + 1,))
    except Exception as e:  # every failure is a wrong answer for the test
        note(f"connection {i}: {e!r}")


threads = [threading.Thread(target=run, args=(i,)) for i in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"count": len(wrong), "wrong": wrong[:20]}))
