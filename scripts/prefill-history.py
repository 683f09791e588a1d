#!/usr/bin/env python3
"""Fills an embedded store with synthetic history, for measuring how the send
path behaves once history is large (BENCHMARKS.md, "History size matters").

    scripts/prefill-history.py DATA_DIR [MESSAGES]   (default 3,000,000)

DATA_DIR must hold a charcha.db that a Charcha server created (start the server
once on it, stop it, then run this). Messages go to 20,000 conversations of
40,000 made-up users, with ULID-shaped ids in time order and 40-80 byte texts,
like the bench's. The server is not running meanwhile."""
import os, random, sqlite3, string, sys, time

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

def crockford(value, chars):
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(chars)))

def ulid(ms, rnd):
    return crockford(ms, 10) + crockford(rnd.getrandbits(80), 16)

def main():
    data_dir = sys.argv[1]
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 3_000_000
    db = os.path.join(data_dir, "charcha.db")
    if not os.path.exists(db):
        sys.exit(f"{db} not found: start Charcha once with CHARCHA_DATA_DIR={data_dir} first")
    rnd = random.Random(7)
    users = [ulid(1_700_000_000_000 + i, rnd) for i in range(40_000)]
    pairs = [tuple(sorted(rnd.sample(users, 2))) for _ in range(20_000)]
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    start_ms = int(time.time() * 1000) - total  # one message a millisecond, ending now
    texts = ["".join(rnd.choice(string.ascii_letters + " ") for _ in range(rnd.randint(40, 80))) for _ in range(5000)]
    began = time.time()
    batch = []
    for n in range(total):
        a, b = rnd.choice(pairs)
        sender, recipient = (a, b) if rnd.random() < 0.5 else (b, a)
        ms = start_ms + n
        text = texts[n % len(texts)]
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
        batch.append((ulid(ms, rnd), f"dm:{a}:{b}", sender, recipient, text, None, created, f"c{n}"))
        if len(batch) == 20_000:
            conn.executemany(
                "INSERT INTO messages (id, conversation_id, sender_id, recipient_id, text, image, created_at, client_msg_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
            conn.commit()
            batch.clear()
    if batch:
        conn.executemany(
            "INSERT INTO messages (id, conversation_id, sender_id, recipient_id, text, image, created_at, client_msg_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
        conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = os.path.getsize(db) / 1e9
    print(f"{total:,} messages in {time.time() - began:.0f} s; charcha.db is {size:.2f} GB")

if __name__ == "__main__":
    main()
