-- Input for the realprog sqlite3 test: run by the sqlite3 shell on an in-memory database with
-- and without LD_PRELOAD=libtinymalloc.so; the output must be identical. Every value is derived
-- from the row number (no random(), no dates), and every result is ordered.
.bail on
.headers on
.mode list
PRAGMA cache_size = -65536;

CREATE TABLE t(
  id INTEGER PRIMARY KEY,
  grp INTEGER NOT NULL,
  val INTEGER NOT NULL,
  name TEXT NOT NULL,
  payload TEXT NOT NULL
);

-- 400000 rows from a recursive CTE. The multiplicative hash spreads grp/val; the text columns
-- vary in length (payload from 8 to ~300 bytes) so the pages and records differ in size.
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 400000)
INSERT INTO t(id, grp, val, name, payload)
SELECT n,
       (n * 2654435761) % 997,
       (n * 40503) % 1000003,
       printf('%08x-%s', (n * 2654435761) % 4294967296, substr('abcdefghijklmnopqrstuvwxyz', 1 + n % 26, 1 + n % 7)),
       printf('%08x', n) || replace(hex(zeroblob(n % 150)), '00', printf('%02x', n % 256))
FROM seq;

SELECT 'rows', count(*), sum(length(payload)), sum(val) FROM t;

CREATE INDEX t_grp_val ON t(grp, val);
CREATE INDEX t_name ON t(name);

-- GROUP BY with aggregates, including group_concat (large intermediate strings).
SELECT grp, count(*) AS n, sum(val) AS s, min(val) AS lo, max(val) AS hi, avg(length(payload)) AS avg_len,
       length(group_concat(substr(name, 1, 8), ',')) AS concat_len
FROM t GROUP BY grp ORDER BY s DESC, grp LIMIT 15;

-- Join against an aggregated derived table, then a second table built from the first.
CREATE TABLE g AS
SELECT grp, count(*) AS n, sum(val) AS s FROM t GROUP BY grp;
CREATE INDEX g_s ON g(s);

SELECT t.grp, g.n, count(*) AS above, sum(t.val - g.s / g.n) AS excess
FROM t JOIN g ON g.grp = t.grp
WHERE t.val > g.s / g.n
GROUP BY t.grp ORDER BY excess DESC, t.grp LIMIT 10;

-- ORDER BY over a text expression with LIMIT (sorter with spilling records).
SELECT id, name, substr(payload, 1, 24) AS p, length(payload) AS len
FROM t ORDER BY substr(payload, 9) DESC, id LIMIT 12;

-- Index lookups and a LIKE scan.
SELECT count(*), sum(val) FROM t WHERE grp BETWEEN 100 AND 120 AND val < 500000;
SELECT count(*), min(name), max(name) FROM t WHERE name LIKE '%-abc%';

-- Window functions over a large partitioned input.
SELECT grp, id, val, rnk, running FROM (
  SELECT grp, id, val,
         rank() OVER (PARTITION BY grp ORDER BY val DESC, id) AS rnk,
         sum(val) OVER (PARTITION BY grp ORDER BY id ROWS BETWEEN 50 PRECEDING AND CURRENT ROW) AS running
  FROM t WHERE grp < 40)
WHERE rnk <= 2 ORDER BY grp, rnk LIMIT 20;

-- Updates and deletes that rewrite records to other sizes, then VACUUM.
UPDATE t SET payload = payload || payload WHERE id % 5 = 0;
DELETE FROM t WHERE id % 3 = 0;
SELECT 'after-update', count(*), sum(length(payload)), total(val) FROM t;
VACUUM;
PRAGMA integrity_check;

-- DISTINCT and a self-join through the (grp, val) index.
SELECT count(DISTINCT substr(name, 10)) FROM t;
SELECT count(*), sum(b.val - a.val) FROM t AS a JOIN t AS b
  ON b.grp = a.grp AND b.val BETWEEN a.val - 3000 AND a.val + 3000 AND b.id <> a.id
WHERE a.id % 10 = 1;
SELECT a.id, b.id, a.grp, b.val - a.val AS d FROM t AS a JOIN t AS b
  ON b.grp = a.grp AND b.val BETWEEN a.val - 3000 AND a.val + 3000 AND b.id <> a.id
ORDER BY abs(b.val - a.val), a.id, b.id LIMIT 6;

-- JSON functions on generated documents.
SELECT count(*), sum(json_extract(doc, '$.v')), max(json_array_length(doc, '$.tags'))
FROM (SELECT json_object('id', id, 'v', val % 1000, 'tags', json_array(grp, name, substr(payload, 1, 10))) AS doc
      FROM t WHERE id % 4 = 1);
