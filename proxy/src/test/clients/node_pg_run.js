// ClientDriversIT's node-postgres run: CONNS clients at once, each READS reads through a named
// prepared statement (node-postgres parses it once per connection, then binds it) and UPDATES
// transactions (BEGIN, a named UPDATE, COMMIT). Prints one JSON object: wrong answers (first 20),
// how many.
//
// usage: node node_pg_run.js PORT CONNS READS UPDATES
const { Client } = require('pg');

const [port, conns, reads, updates] = process.argv.slice(2, 6).map(Number);
const wrong = [];

async function run(i) {
  const c = new Client({
    host: '127.0.0.1', port, database: 'drivers', user: 'postgres', password: 'postgres',
  });
  try {
    await c.connect();
    for (let q = 0; q < reads; q++) {
      const row = (i * 7 + q) % 100 + 1;
      const asked = `n${i}q${q}`;
      const expected = `${asked}:owner-${row}`;
      const res = await c.query({
        name: 'read',
        text: "SELECT $1::text || ':' || owner AS v FROM accounts WHERE id = $2",
        values: [asked, row],
      });
      const got = res.rows.map((r) => r.v);
      if (got.length !== 1 || got[0] !== expected) {
        wrong.push(`asked ${expected}, got ${JSON.stringify(got)}`);
      }
    }
    for (let u = 0; u < updates; u++) {
      await c.query('BEGIN');
      await c.query({
        name: 'update',
        text: 'UPDATE accounts SET balance = balance + 1 WHERE id = $1',
        values: [(i * 13 + u) % 100 + 1],
      });
      await c.query('COMMIT');
    }
  } catch (e) {
    wrong.push(`client ${i}: ${e}`);
  } finally {
    await c.end().catch(() => {});
  }
}

Promise.all(Array.from({ length: conns }, (_, i) => run(i))).then(() => {
  console.log(JSON.stringify({ count: wrong.length, wrong: wrong.slice(0, 20) }));
});
