package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.cache.ResultCache;
import org.cryoprotect.proxy.testing.Backends;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The result cache (DESIGN §7) through a real proxy and PostgreSQL: a hit is the miss's bytes, for
 * both protocols; roles and settings never share replies; time, session and volatile functions are
 * never cached; writes through the proxy and from elsewhere are seen at once or within the NOTIFY
 * delay; a lost LISTEN connection flushes instead of serving stale replies; the size bound holds.
 */
@PgTest
class CacheIT {
  static PgCluster pg;
  static RunningProxy proxy;
  static RunningProxy second;

  static final String RULES =
      "cache:\n"
          + "  enabled: true\n"
          + "  max_size: 1mb\n"
          + "  max_entry_size: 64kb\n"
          + "  rules:\n"
          + "    - { tables: [public.types_t, public.kv, public.rls_items, s1.t, s2.t,"
          + " public.big], ttl: 60s }\n";

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("cacheapp");
    String migration;
    try (var in = CacheIT.class.getResourceAsStream("/sql/migrations/V4__cache_invalidation.sql")) {
      migration = new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
    try (Connection c = pg.primary().connect("cacheapp");
        Statement st = c.createStatement()) {
      st.execute(migration);
      st.execute(
          "CREATE TABLE types_t (id int PRIMARY KEY, t text, n numeric(20,6), f float8,"
              + " ts timestamptz, d date, arr int[], tarr text[], b bytea, j jsonb, iv interval,"
              + " nul text)");
      st.execute(
          "INSERT INTO types_t SELECT i, 'text ' || i, i * 1.5, i / 7.0,"
              + " timestamptz '2026-12-03 10:00:00+00' + i * interval '1 hour',"
              + " date '2026-01-01' + i, ARRAY[i, i + 1, NULL], ARRAY['a''b', 'c\"d', NULL],"
              + " decode('00ff' || lpad(to_hex(i), 2, '0'), 'hex'),"
              + " jsonb_build_object('k', i, 'arr', jsonb_build_array(1, 'x')),"
              + " i * interval '90 minutes', NULL FROM generate_series(1, 50) i");
      st.execute("CREATE TABLE kv (k int PRIMARY KEY, v int NOT NULL)");
      st.execute("INSERT INTO kv SELECT i, 0 FROM generate_series(1, 10) i");
      st.execute("CREATE TABLE big (id int PRIMARY KEY, pad text)");
      st.execute("INSERT INTO big SELECT i, repeat('x', 900) FROM generate_series(1, 6000) i");
      st.execute("CREATE TABLE rls_items (id int PRIMARY KEY, owner name NOT NULL)");
      st.execute(
          "INSERT INTO rls_items SELECT i, CASE WHEN i % 2 = 0 THEN 'alice' ELSE 'bob' END"
              + " FROM generate_series(1, 20) i");
      st.execute("ALTER TABLE rls_items ENABLE ROW LEVEL SECURITY");
      st.execute("CREATE POLICY own_rows ON rls_items USING (owner = current_user)");
      for (String role : List.of("alice", "bob")) {
        st.execute("CREATE ROLE " + role + " LOGIN");
        st.execute("GRANT SELECT ON rls_items, kv TO " + role);
      }
      st.execute("CREATE SCHEMA s1");
      st.execute("CREATE SCHEMA s2");
      st.execute("CREATE TABLE s1.t (v text)");
      st.execute("CREATE TABLE s2.t (v text)");
      st.execute("INSERT INTO s1.t VALUES ('from s1')");
      st.execute("INSERT INTO s2.t VALUES ('from s2')");
      st.execute("CREATE SEQUENCE seq");
      st.execute("CREATE FUNCTION my_volatile() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 42'");
      for (String t : List.of("types_t", "kv", "rls_items", "s1.t", "s2.t", "big")) {
        st.execute("SELECT cryoproxy.enable_cache_invalidation('" + t + "')");
      }
    }
    String yaml =
        "pool: { mode: transaction, size: 2, wait_timeout: 20s }\n"
            + "auth: { type: trust, admin_users: postgres }\n"
            + RULES
            + RunningProxy.database("app", "cacheapp", "127.0.0.1", pg.primary().port());
    proxy = RunningProxy.start(yaml);
    second = RunningProxy.start(yaml);
    awaitListening(proxy);
    awaitListening(second);
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
    if (second != null) {
      second.close();
    }
  }

  static ResultCache cache(RunningProxy p) {
    return p.server().cache();
  }

  /**
   * The LISTEN connection is up once a repeated read is a hit. A request is stored the second time
   * it is seen (the doorkeeper), and served from the cache from the third on.
   */
  static void awaitListening(RunningProxy p) {
    await()
        .atMost(Duration.ofSeconds(20))
        .pollInterval(Duration.ofMillis(50))
        .until(
            () -> {
              long before = cache(p).hits();
              try (WireClient c = login(p, "postgres")) {
                for (int i = 0; i < 3; i++) { // seen, stored, served
                  c.ask("SELECT v FROM kv WHERE k = 10");
                }
              }
              return cache(p).hits() > before;
            });
  }

  static WireClient login(RunningProxy p, String user) throws Exception {
    WireClient c = new WireClient(p.port());
    c.startup(user, "app");
    assertThat(c.readUntilReady()).isNull();
    return c;
  }

  static final List<String> QUERIES =
      List.of(
          "SELECT * FROM types_t ORDER BY id",
          "SELECT id, t FROM types_t WHERE id = 1",
          "SELECT n, f FROM types_t WHERE id BETWEEN 3 AND 9 ORDER BY id",
          "SELECT ts, d FROM types_t ORDER BY id LIMIT 5",
          "SELECT arr, tarr FROM types_t WHERE id < 4 ORDER BY id",
          "SELECT b FROM types_t WHERE id = 7",
          "SELECT j, j -> 'arr' FROM types_t WHERE id = 8",
          "SELECT iv, nul FROM types_t WHERE id = 9",
          "SELECT * FROM types_t WHERE id < 0",
          "SELECT count(*), sum(n), avg(f) FROM types_t",
          "SELECT nul IS NULL, coalesce(nul, 'none') FROM types_t WHERE id = 2",
          "SELECT array_agg(id ORDER BY id) FROM types_t",
          "SELECT t FROM types_t WHERE t LIKE 'text 1%' ORDER BY id",
          "SELECT ts AT TIME ZONE 'UTC' FROM types_t WHERE id = 3",
          "SELECT n::text, round(f::numeric, 3) FROM types_t WHERE id = 11",
          "SELECT k, v FROM kv ORDER BY k",
          "SELECT max(ts) - min(ts) FROM types_t",
          "SELECT id, upper(t), char_length(t) FROM types_t WHERE id IN (1, 2, 3) ORDER BY id",
          "WITH x AS (SELECT id FROM types_t WHERE id > 45) SELECT * FROM x ORDER BY id",
          "SELECT jsonb_pretty(j) FROM types_t WHERE id = 12");

  /** Acceptance 1: a hit gives exactly the bytes of the miss, for both protocols and formats. */
  @Test
  void aHitIsTheMissByteForByte() throws Exception {
    try (WireClient c = login(proxy, "postgres")) {
      warmCatalog(c, QUERIES);
      cache(proxy).flush(null, ResultCache.SOURCE_ADMIN);
      for (String sql : QUERIES) {
        long hits = cache(proxy).hits();
        List<Message> miss = c.exchange(WireClient.query(sql));
        List<Message> hit = c.exchange(WireClient.query(sql));
        assertThat(cache(proxy).hits()).as("simple: %s", sql).isEqualTo(hits + 1);
        assertSameBytes(sql, miss, hit);
        assertThat(miss.get(miss.size() - 2).type()).isEqualTo('C');
        for (short format : new short[] {0, 1}) {
          byte[][] unit = {
            WireClient.parse("", sql),
            WireClient.bind("", "", format),
            WireClient.describe('P', ""),
            WireClient.execute("", 0),
            WireClient.sync()
          };
          List<Message> xfirst = c.exchange(unit); // seen for the first time: not recorded
          hits = cache(proxy).hits();
          List<Message> xmiss = c.exchange(unit);
          List<Message> xhit = c.exchange(unit);
          assertThat(cache(proxy).hits()).as("extended %d: %s", format, sql).isEqualTo(hits + 1);
          assertSameBytes(sql, xfirst, xmiss);
          assertSameBytes(sql, xmiss, xhit);
        }
      }
      // A named statement prepared once and bound with parameters, as pgJDBC does after its
      // prepareThreshold: Bind/Execute/Sync only, answered from the cache.
      c.exchange(
          WireClient.parse("S_1", "SELECT t, ts FROM types_t WHERE id = $1", 23),
          WireClient.sync());
      for (String id : List.of("5", "6", "5")) {
        byte[][] unit = {
          WireClient.bind("", "S_1", (short) 1, id), WireClient.execute("", 0), WireClient.sync()
        };
        List<Message> first = c.exchange(unit);
        List<Message> again = c.exchange(unit);
        assertSameBytes(id, first, again);
      }
      List<Message> five =
          c.exchange(WireClient.bind("", "S_1", "5"), WireClient.execute("", 0), WireClient.sync());
      List<Message> six =
          c.exchange(WireClient.bind("", "S_1", "6"), WireClient.execute("", 0), WireClient.sync());
      assertThat(texts(five)).isNotEqualTo(texts(six)); // parameters are in the key
    }
  }

  /**
   * Runs each text twice so that the proxy looks up its functions and relations (a request is
   * planned the second time it is seen, and one with an unknown name is not cached then), then
   * waits for the look-ups.
   */
  static void warmCatalog(WireClient c, List<String> texts) throws Exception {
    for (String sql : texts) {
      c.ask(sql); // seen by the doorkeeper
      c.ask(sql); // planned: unknown names are looked up
    }
    Thread.sleep(300);
  }

  static void assertSameBytes(String what, List<Message> a, List<Message> b) {
    assertThat(b).as(what).hasSameSizeAs(a);
    for (int i = 0; i < a.size(); i++) {
      assertThat(b.get(i).type()).as("%s message %d", what, i).isEqualTo(a.get(i).type());
      assertThat(b.get(i).body()).as("%s message %d", what, i).isEqualTo(a.get(i).body());
    }
  }

  static List<List<String>> texts(List<Message> reply) {
    List<List<String>> rows = new ArrayList<>();
    for (Message m : reply) {
      if (m.type() == 'D') {
        rows.add(m.texts());
      }
    }
    return rows;
  }

  /**
   * Acceptance 2: two roles running the same SQL on an RLS table through one proxy each get only
   * their own rows, and clients with different settings get their own correct bytes.
   */
  @Test
  void rolesAndSettingsNeverShareAReply() throws Exception {
    int queries = Integer.getInteger("cryoproxy.cache.queries", 100_000);
    ExecutorService pool = Executors.newFixedThreadPool(4);
    AtomicLong foreign = new AtomicLong();
    AtomicLong done = new AtomicLong();
    long hitsBefore = cache(proxy).hits();
    try {
      List<Future<?>> runs = new ArrayList<>();
      for (int t = 0; t < 4; t++) {
        String role = t % 2 == 0 ? "alice" : "bob";
        runs.add(
            pool.submit(
                () -> {
                  try (Connection c = proxy.connect("app", role, null);
                      PreparedStatement ps =
                          c.prepareStatement("SELECT id, owner FROM rls_items ORDER BY id")) {
                    for (int i = 0; i < queries / 4; i++) {
                      try (ResultSet rs = ps.executeQuery()) {
                        int rows = 0;
                        while (rs.next()) {
                          rows++;
                          if (!rs.getString(2).equals(role)) {
                            foreign.incrementAndGet();
                          }
                        }
                        if (rows != 10) {
                          foreign.incrementAndGet();
                        }
                      }
                      done.incrementAndGet();
                    }
                  }
                  return null;
                }));
      }
      for (Future<?> f : runs) {
        f.get();
      }
    } finally {
      pool.shutdownNow();
    }
    long hits = cache(proxy).hits() - hitsBefore;
    System.out.printf(
        "[CacheIT] RLS run: %d queries by two roles, %d foreign or missing rows, %d cache hits%n",
        done.get(), foreign.get(), hits);
    assertThat(done.get()).isEqualTo(queries / 4 * 4L);
    assertThat(foreign.get()).isZero();
    assertThat(hits).as("the run was served by the cache").isGreaterThan(done.get() / 2);

    // Settings that change the bytes: each client gets what PostgreSQL gives it directly.
    List<String[]> settings =
        List.of(
            new String[] {"SET search_path = s1", "SELECT v FROM t"},
            new String[] {"SET search_path = s2", "SELECT v FROM t"},
            new String[] {"SET TimeZone = 'Asia/Tokyo'", "SELECT ts FROM types_t WHERE id = 1"},
            new String[] {"SET TimeZone = 'America/Lima'", "SELECT ts FROM types_t WHERE id = 1"},
            new String[] {"SET DateStyle = 'German'", "SELECT ts, d FROM types_t WHERE id = 1"},
            new String[] {"SET DateStyle = 'SQL, DMY'", "SELECT ts, d FROM types_t WHERE id = 1"},
            new String[] {"SET extra_float_digits = 0", "SELECT f FROM types_t WHERE id = 3"},
            new String[] {"SET extra_float_digits = 3", "SELECT f FROM types_t WHERE id = 3"},
            new String[] {"SET IntervalStyle = 'iso_8601'", "SELECT iv FROM types_t WHERE id = 3"});
    for (int round = 0; round < 2; round++) { // the second round is answered from the cache
      for (String[] s : settings) {
        List<List<String>> direct;
        try (WireClient d = new WireClient(pg.primary().port())) {
          d.startup("postgres", "cacheapp");
          d.readUntilReady();
          d.ask(s[0]);
          direct = d.ask(s[1]).rows();
        }
        try (WireClient c = login(proxy, "postgres")) {
          assertThat(c.ask(s[0]).errors()).isEmpty();
          for (int i = 0; i < 2; i++) {
            assertThat(c.ask(s[1]).rows()).as("%s; %s", s[0], s[1]).isEqualTo(direct);
          }
        }
      }
    }
  }

  /** Acceptance 3: time, session, volatile functions, locks and writes are never cached. */
  @Test
  void timeSessionAndVolatileWorkIsNeverCached() throws Exception {
    List<String> never =
        List.of(
            "SELECT now(), v FROM kv WHERE k = 1",
            "SELECT random(), v FROM kv WHERE k = 1",
            "SELECT nextval('seq'), v FROM kv WHERE k = 1",
            "SELECT current_setting('work_mem'), v FROM kv WHERE k = 1",
            "SELECT clock_timestamp(), v FROM kv WHERE k = 1",
            "SELECT txid_current(), v FROM kv WHERE k = 1",
            "SELECT my_volatile(), v FROM kv WHERE k = 1",
            "SELECT current_timestamp, v FROM kv WHERE k = 1",
            "SELECT 'now'::timestamptz, v FROM kv WHERE k = 1",
            "SELECT v FROM kv WHERE k = 1 FOR UPDATE",
            "SELECT v FROM kv WHERE k = 1 FOR SHARE",
            "WITH u AS (UPDATE kv SET v = v WHERE k = 1 RETURNING v) SELECT * FROM u",
            "SELECT v FROM kv WHERE k = 1 /* cryoproxy:nocache */",
            "SELECT * FROM pg_class WHERE relname = 'kv'");
    try (WireClient c = login(proxy, "postgres")) {
      warmCatalog(c, never);
      long hits = cache(proxy).hits();
      for (int i = 0; i < 3; i++) {
        for (String sql : never) {
          assertThat(c.ask(sql).errors()).as(sql).isEmpty();
        }
      }
      assertThat(cache(proxy).hits()).isEqualTo(hits);
      // Inside a read-write transaction nothing is served or stored either.
      c.ask("BEGIN");
      c.ask("UPDATE kv SET v = v + 1 WHERE k = 3");
      c.ask("SELECT v FROM kv WHERE k = 3");
      c.ask("SELECT v FROM kv WHERE k = 3");
      c.ask("ROLLBACK");
      assertThat(cache(proxy).hits()).isEqualTo(hits);
    }
  }

  /**
   * Acceptance 4: a write through the proxy is seen by the writer's next read, always; a write from
   * a direct connection reaches two running proxies within 100 ms.
   */
  @Test
  void writesAreSeenAtOnceThroughTheProxyAndByNotifyFromElsewhere() throws Exception {
    try (WireClient writer = login(proxy, "postgres");
        WireClient reader = login(proxy, "postgres")) {
      for (int i = 1; i <= 200; i++) {
        reader.ask("SELECT v FROM kv WHERE k = 4"); // cached
        assertThat(writer.ask("UPDATE kv SET v = " + i + " WHERE k = 4").errors()).isEmpty();
        assertThat(writer.ask("SELECT v FROM kv WHERE k = 4").rows())
            .isEqualTo(List.of(List.of(String.valueOf(i))));
        assertThat(reader.ask("SELECT v FROM kv WHERE k = 4").rows())
            .isEqualTo(List.of(List.of(String.valueOf(i))));
      }
      // Extended protocol and an explicit transaction: the same.
      for (int i = 201; i <= 260; i++) {
        writer.ask("BEGIN");
        writer.exchange(
            WireClient.parse("", "UPDATE kv SET v = $1 WHERE k = 4"),
            WireClient.bind("", "", String.valueOf(i)),
            WireClient.execute("", 0),
            WireClient.sync());
        writer.ask("COMMIT");
        assertThat(reader.ask("SELECT v FROM kv WHERE k = 4").rows())
            .isEqualTo(List.of(List.of(String.valueOf(i))));
      }
    }

    int writes = Integer.getInteger("cryoproxy.cache.notifyWrites", 1_000);
    long[] lags = new long[writes];
    try (Connection direct = pg.primary().connect("cacheapp");
        PreparedStatement update = direct.prepareStatement("UPDATE kv SET v = ? WHERE k = 5");
        WireClient a = login(proxy, "postgres");
        WireClient b = login(second, "postgres")) {
      String read = "SELECT v FROM kv WHERE k = 5";
      for (int i = 0; i < writes; i++) {
        a.ask(read);
        a.ask(read);
        b.ask(read);
        b.ask(read);
        update.setInt(1, 1_000 + i);
        update.executeUpdate();
        long committed = System.nanoTime();
        List<List<String>> want = List.of(List.of(String.valueOf(1_000 + i)));
        boolean seenA = false;
        boolean seenB = false;
        while (!(seenA && seenB)) {
          seenA = seenA || a.ask(read).rows().equals(want);
          seenB = seenB || b.ask(read).rows().equals(want);
          assertThat(System.nanoTime() - committed).isLessThan(5_000_000_000L);
        }
        lags[i] = System.nanoTime() - committed;
      }
    }
    Arrays.sort(lags);
    double p50 = lags[writes / 2] / 1e6;
    double p99 = lags[writes * 99 / 100] / 1e6;
    System.out.printf(
        "[CacheIT] direct write seen through two proxies: %d writes, p50 %.2f ms, p99 %.2f ms,"
            + " max %.2f ms%n",
        writes, p50, p99, lags[writes - 1] / 1e6);
    assertThat(p99).as("p99 ms").isLessThan(100);
  }

  /** Acceptance 4: the LISTEN connection's backend killed: a flush, never a stale read. */
  @Test
  void aLostListenConnectionFlushesInsteadOfServingStaleReplies() throws Exception {
    try (WireClient c = login(proxy, "postgres");
        Connection direct = pg.primary().connect("cacheapp");
        Statement st = direct.createStatement()) {
      for (int round = 0; round < 3; round++) {
        String read = "SELECT v FROM kv WHERE k = 6";
        c.ask(read);
        c.ask(read);
        long hits = cache(proxy).hits();
        c.ask(read);
        assertThat(cache(proxy).hits()).isEqualTo(hits + 1); // cached
        // End every listener's backend, then write at once, before anyone reconnects.
        List<Integer> pids = new ArrayList<>();
        try (ResultSet rs =
            st.executeQuery(
                "SELECT pid FROM pg_stat_activity"
                    + " WHERE application_name = 'cryoproxy-cache-listener'")) {
          while (rs.next()) {
            pids.add(rs.getInt(1));
          }
        }
        assertThat(pids).hasSize(2); // one per proxy
        Backends.terminate(direct, pids);
        Backends.awaitGone(direct, pids, Duration.ofSeconds(5));
        st.executeUpdate("UPDATE kv SET v = " + (500 + round) + " WHERE k = 6");
        // A write from elsewhere is seen within the NOTIFY delay (acceptance: 100 ms); this one's
        // NOTIFY is lost with the connection, so only the flush on loss can make it seen. Without
        // it the cached reply would be served until its TTL (60 s).
        Thread.sleep(100);
        for (int i = 0; i < 20; i++) {
          assertThat(c.ask(read).rows())
              .as("round %d read %d", round, i)
              .isEqualTo(List.of(List.of(String.valueOf(500 + round))));
          Thread.sleep(10);
        }
        awaitListening(proxy);
        awaitListening(second);
      }
    }
  }

  /** Acceptance 6: under unique queries the bytes never exceed max_size by more than one entry. */
  @Test
  void theSizeBoundHoldsUnderUniqueQueries() throws Exception {
    long bound = cache(proxy).maxSize() + cache(proxy).maxEntrySize();
    long maxSeen = 0;
    try (WireClient c = login(proxy, "postgres")) {
      for (int i = 1; i <= 3_000; i++) {
        c.ask("SELECT id, pad FROM big WHERE id = " + i); // seen
        c.ask("SELECT id, pad FROM big WHERE id = " + i); // stored
        long bytes = cache(proxy).bytes();
        maxSeen = Math.max(maxSeen, bytes);
        assertThat(bytes).as("after %d unique queries", i).isLessThanOrEqualTo(bound);
      }
    }
    String metrics =
        new String(
            proxy.adminUri("/metrics").toURL().openStream().readAllBytes(), StandardCharsets.UTF_8);
    long scraped =
        metrics
            .lines()
            .filter(l -> l.startsWith("cryoproxy_cache_bytes "))
            .mapToLong(l -> (long) Double.parseDouble(l.split(" ")[1]))
            .findFirst()
            .orElseThrow();
    System.out.printf(
        "[CacheIT] 3,000 unique ~1 kB replies into a 1 MB cache: max %d bytes, scraped %d, bound %d,"
            + " %d entries%n",
        maxSeen, scraped, bound, cache(proxy).entryCount());
    assertThat(scraped).isLessThanOrEqualTo(bound).isPositive();
    assertThat(maxSeen).isGreaterThan(cache(proxy).maxSize() / 2); // it did fill up
  }

  /**
   * Acceptance 6, the heap: a proxy with an 8 MB cache filled past its bound by unique replies
   * holds about that much more heap (its weigher counts the objects, not only the reply bytes), and
   * gives it back when flushed.
   */
  @Test
  void theHeapFollowsTheSizeBound() throws Exception {
    String yaml =
        "pool: { mode: transaction, size: 2, wait_timeout: 20s }\n"
            + RULES.replace("max_size: 1mb", "max_size: 8mb")
            + RunningProxy.database("app", "cacheapp", "127.0.0.1", pg.primary().port());
    try (RunningProxy sized = RunningProxy.start(yaml)) {
      awaitListening(sized);
      long before = heapAfterGc();
      try (WireClient c = login(sized, "postgres")) {
        for (int i = 0; i < 9_000; i++) {
          String sql = "SELECT id, pad, " + i + " AS n FROM big WHERE id = " + (i % 6_000 + 1);
          c.ask(sql);
          c.ask(sql);
        }
      }
      long full = heapAfterGc();
      long bytes = cache(sized).bytes();
      long entries = cache(sized).entryCount();
      cache(sized).flush(null, ResultCache.SOURCE_ADMIN);
      long flushed = heapAfterGc();
      System.out.printf(
          "[CacheIT] 8 MB cache, 9,000 unique ~1 kB replies: %d entries, %d bytes by the weigher;"
              + " heap +%.1f MB full, +%.1f MB after a flush%n",
          entries, bytes, (full - before) / 1e6, (flushed - before) / 1e6);
      long max = cache(sized).maxSize();
      assertThat(bytes).isLessThanOrEqualTo(max + cache(sized).maxEntrySize());
      assertThat(bytes).isGreaterThan(max / 2);
      // the store's entries, plus its bounded planning caches and the test's own garbage
      assertThat(full - before).isLessThan(max + max / 2 + (4L << 20));
      assertThat(full - flushed).as("freed by the flush").isGreaterThan(max / 2);
    }
  }

  static long heapAfterGc() throws InterruptedException {
    java.lang.management.MemoryMXBean memory =
        java.lang.management.ManagementFactory.getMemoryMXBean();
    for (int i = 0; i < 3; i++) {
      System.gc();
      Thread.sleep(100);
    }
    return memory.getHeapMemoryUsage().getUsed();
  }

  /** Concurrent identical misses run once on the server; the others are served its reply. */
  @Test
  void identicalConcurrentMissesRunOnce() throws Exception {
    String slow = "SELECT count(*) FROM big a, big b WHERE a.id < 800 AND (a.id * b.id) % 7919 = 1";
    try (WireClient c = login(proxy, "postgres")) {
      warmCatalog(c, List.of("SELECT count(*) FROM big a, big b WHERE a.id < 0")); // look-ups
      c.ask(slow); // the doorkeeper has seen it once: the next ones are planned and recorded
    }
    long misses = cache(proxy).misses();
    long hits = cache(proxy).hits();
    List<CompletableFuture<List<List<String>>>> runs = new ArrayList<>();
    List<WireClient> clients = new ArrayList<>();
    try {
      for (int i = 0; i < 6; i++) {
        clients.add(login(proxy, "postgres"));
      }
      for (WireClient c : clients) {
        c.send(WireClient.query(slow));
      }
      for (WireClient c : clients) {
        runs.add(CompletableFuture.completedFuture(texts(c.readReply())));
      }
    } finally {
      for (WireClient c : clients) {
        c.close();
      }
    }
    List<List<String>> first = runs.get(0).get();
    for (CompletableFuture<List<List<String>>> r : runs) {
      assertThat(r.get()).isEqualTo(first);
    }
    System.out.printf(
        "[CacheIT] 6 identical concurrent misses: %d ran on the server, %d served from the cache%n",
        cache(proxy).misses() - misses, cache(proxy).hits() - hits);
    assertThat(cache(proxy).misses() - misses).isEqualTo(1);
    assertThat(cache(proxy).hits() - hits).isEqualTo(5);
  }

  /** SHOW CACHE and CACHE FLUSH on the admin console. */
  @Test
  void theAdminConsoleShowsAndFlushes() throws Exception {
    try (WireClient c = login(proxy, "postgres")) {
      c.ask("SELECT v FROM kv WHERE k = 7");
      c.ask("SELECT v FROM kv WHERE k = 7");
    }
    try (WireClient admin = new WireClient(proxy.port())) {
      admin.startup("postgres", "cryoproxy");
      assertThat(admin.readUntilReady()).isNull();
      var show = admin.ask("SHOW CACHE");
      assertThat(show.errors()).isEmpty();
      assertThat(show.rows().get(0).get(0)).isEqualTo("*");
      assertThat(Long.parseLong(show.rows().get(0).get(1))).isPositive();
      assertThat(admin.ask("CACHE FLUSH public.kv").tags()).contains("CACHE FLUSH");
      long hits = cache(proxy).hits();
      try (WireClient c = login(proxy, "postgres")) {
        c.ask("SELECT v FROM kv WHERE k = 7");
      }
      assertThat(cache(proxy).hits()).isEqualTo(hits); // flushed: a miss
      assertThat(admin.ask("CACHE FLUSH").tags()).contains("CACHE FLUSH");
      assertThat(cache(proxy).entryCount()).isZero();
    }
  }
}
