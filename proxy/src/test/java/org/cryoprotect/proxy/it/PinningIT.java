package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.pool.ServerPool;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * Transaction mode: session state that cannot move between server connections pins the client to
 * its server connection, for as long as the state exists and no longer.
 *
 * <p>"Pinned" is observed from outside: the client is idle (not in a transaction) and yet the pool
 * reports its server connection active, and with a pool of one, other clients wait. "Released" is
 * the pool's active count dropping back to zero.
 */
class PinningIT {
  static PgCluster pg;

  /** One server connection: a pinned client makes every other client wait. */
  static RunningProxy one;

  /** Two server connections: others keep working on the second while one is pinned. */
  static RunningProxy two;

  @BeforeAll
  static void start() throws Exception {
    pg = PgCluster.builder().start();
    pg.primary().sql("CREATE DATABASE pins");
    String db = RunningProxy.database("pins", "pins", "127.0.0.1", pg.primary().port());
    one = RunningProxy.start("pool: { mode: transaction, size: 1, wait_timeout: 5s }\n" + db);
    two = RunningProxy.start("pool: { mode: transaction, size: 2, wait_timeout: 5s }\n" + db);
  }

  @AfterAll
  static void stop() {
    one.close();
    two.close();
    pg.close();
  }

  /** A test that failed with a pin held must not hand the pin to the next test. */
  @BeforeEach
  void everyServerConnectionIsFree() {
    awaitReleased(one);
    awaitReleased(two);
  }

  // ------------------------------------------------------------------ helpers

  static Connection connect(RunningProxy proxy, String... options) throws SQLException {
    return proxy.connect("pins", "postgres", null, options);
  }

  static String one(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      assertThat(rs.next()).as(sql).isTrue();
      return rs.getString(1);
    }
  }

  static void run(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement()) {
      s.execute(sql);
    }
  }

  static int active(RunningProxy proxy) {
    return proxy.server().pools().stats().stream().mapToInt(ServerPool.Stats::active).sum();
  }

  static int waiting(RunningProxy proxy) {
    return proxy.server().pools().stats().stream().mapToInt(ServerPool.Stats::waiting).sum();
  }

  /** The (idle) client holds a server connection: it is pinned. */
  static void assertPinned(RunningProxy proxy) {
    // Settled: a just-finished query may still be on its way back to the pool.
    await()
        .during(Duration.ofMillis(300))
        .atMost(Duration.ofSeconds(3))
        .until(() -> active(proxy) == 1);
  }

  static void awaitReleased(RunningProxy proxy) {
    await()
        .atMost(Duration.ofSeconds(5))
        .untilAsserted(() -> assertThat(active(proxy)).as("active server connections").isZero());
  }

  static SQLException sqlError(Throwable e) {
    assertThat(e).isInstanceOf(SQLException.class);
    return (SQLException) e;
  }

  // ------------------------------------------------------------------ LISTEN

  /**
   * LISTEN pins the listener to its server connection: notifications (from a direct connection and
   * from another client of the proxy) reach pgJDBC's {@code getNotifications} while two other
   * clients keep working on the other server connection.
   */
  @Test
  void listenPinsTheListenerWhileOthersKeepWorking() throws Exception {
    try (Connection listener = connect(two);
        Connection worker1 = connect(two);
        Connection worker2 = connect(two)) {
      run(listener, "LISTEN jobs");
      String listenerPid = one(listener, "SELECT pg_backend_pid()");
      assertPinned(two);

      ExecutorService workers = Executors.newFixedThreadPool(2);
      try {
        List<Future<List<String>>> seen = new ArrayList<>();
        for (Connection worker : List.of(worker1, worker2)) {
          seen.add(
              workers.submit(
                  () -> {
                    List<String> pids = new ArrayList<>();
                    for (int i = 0; i < 50; i++) {
                      pids.add(one(worker, "SELECT pg_backend_pid()"));
                    }
                    return pids;
                  }));
        }
        for (Future<List<String>> pids : seen) {
          assertThat(pids.get(30, TimeUnit.SECONDS)).hasSize(50).doesNotContain(listenerPid);
        }
      } finally {
        workers.shutdownNow();
      }

      pg.primary().sql("pins", "SELECT pg_notify('jobs', 'direct')");
      run(worker1, "NOTIFY jobs, 'through the proxy'");
      List<String> received = new ArrayList<>();
      PGConnection pgListener = listener.unwrap(PGConnection.class);
      await()
          .atMost(Duration.ofSeconds(5))
          .untilAsserted(
              () -> {
                PGNotification[] got = pgListener.getNotifications(100);
                for (PGNotification n : got == null ? new PGNotification[0] : got) {
                  assertThat(n.getName()).isEqualTo("jobs");
                  received.add(n.getParameter());
                }
                assertThat(received).containsExactlyInAnyOrder("direct", "through the proxy");
              });
      assertThat(one(listener, "SELECT pg_backend_pid()")).isEqualTo(listenerPid);
      assertPinned(two);
    }
  }

  // ------------------------------------------------------------------ temporary tables

  /**
   * A temporary table lives on one server connection: its client stays there across transactions,
   * and other clients, served on the other server connection meanwhile, never see it.
   */
  @Test
  void temporaryTablesSurviveAcrossTransactionsWhilePinned() throws Exception {
    try (Connection owner = connect(two);
        Connection other = connect(two)) {
      run(owner, "CREATE TEMP TABLE scratch (v int)");
      String pid = one(owner, "SELECT pg_backend_pid()");
      run(owner, "INSERT INTO scratch VALUES (1)");
      run(owner, "INSERT INTO scratch VALUES (2)");
      assertPinned(two);
      for (int i = 0; i < 5; i++) {
        assertThat(one(other, "SELECT to_regclass('pg_temp.scratch') IS NULL")).isEqualTo("t");
        assertThat(one(other, "SELECT pg_backend_pid()")).isNotEqualTo(pid);
        assertThat(one(owner, "SELECT sum(v) FROM scratch")).isEqualTo("3");
      }
      owner.setAutoCommit(false);
      run(owner, "INSERT INTO scratch VALUES (3)");
      owner.commit();
      owner.setAutoCommit(true);
      assertThat(one(owner, "SELECT sum(v) FROM scratch")).isEqualTo("6");
      assertThat(one(owner, "SELECT pg_backend_pid()")).isEqualTo(pid);
      assertPinned(two);
    }
  }

  /** DISCARD ALL ends every kind of pinned state at once, and the client goes on working. */
  @Test
  void discardAllReleasesEveryPin() throws Exception {
    try (Connection c = connect(two)) {
      run(c, "LISTEN everything");
      run(c, "CREATE TEMP TABLE scratch (v int)");
      run(c, "SELECT pg_advisory_lock(9001)");
      run(c, "DECLARE held CURSOR WITH HOLD FOR SELECT 1");
      run(c, "PREPARE twice (int) AS SELECT $1 * 2");
      assertPinned(two);

      run(c, "DISCARD ALL");
      awaitReleased(two);
      assertThat(pg.primary().sql("pins", "SELECT pg_try_advisory_lock(9001)"))
          .containsExactly(List.of("t"));
      assertThat(one(c, "SELECT 'after discard'")).isEqualTo("after discard");
      assertThatThrownBy(() -> one(c, "EXECUTE twice (1)"))
          .satisfies(e -> assertThat(sqlError(e).getSQLState()).isEqualTo("26000"));
      awaitReleased(two);
    }
  }

  // ------------------------------------------------------------------ releasing pins

  /**
   * DISCARD ALL, DEALLOCATE ALL and closing the client end the pinned state, and with it the pin.
   */
  @ParameterizedTest
  @CsvSource(
      delimiter = '|',
      value = {
        "LISTEN jobs | DISCARD ALL",
        "CREATE TEMP TABLE scratch (v int) | DISCARD ALL",
        "SELECT pg_advisory_lock(11) | DISCARD ALL",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1 | DISCARD ALL",
        "PREPARE p AS SELECT 1 | DEALLOCATE ALL",
        "PREPARE p AS SELECT 1 | DISCARD ALL",
        "LISTEN jobs | (disconnect)"
      })
  void thePinEndsWithItsState(String pin, String release) throws Exception {
    assertPinReleased(pin, release);
  }

  /**
   * The narrower commands that end one kind of pinned state: UNLISTEN *, DISCARD TEMP,
   * pg_advisory_unlock_all(), CLOSE ALL. After each the client holds nothing that ties it to its
   * server connection, so the connection must go back to the pool.
   */
  @ParameterizedTest
  @CsvSource(
      delimiter = '|',
      value = {
        "LISTEN jobs | UNLISTEN *",
        "CREATE TEMP TABLE scratch (v int) | DISCARD TEMP",
        "SELECT pg_advisory_lock(12) | SELECT pg_advisory_unlock_all()",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1 | CLOSE ALL"
      })
  void theNarrowReleaseCommandsEndTheirPin(String pin, String release) throws Exception {
    assertPinReleased(pin, release);
  }

  private static void assertPinReleased(String pin, String release) throws Exception {
    Connection c = connect(two);
    try {
      run(c, pin);
      assertPinned(two);
      if (release.equals("(disconnect)")) {
        c.close();
        awaitReleased(two);
        return;
      }
      run(c, release);
      awaitReleased(two);
      // Released, and still a working session.
      assertThat(one(c, "SELECT 'after ' || " + literal(release))).isEqualTo("after " + release);
      awaitReleased(two);
    } finally {
      c.close();
    }
  }

  private static String literal(String s) {
    return "'" + s.replace("'", "''") + "'";
  }

  // ------------------------------------------------------------------ advisory locks

  @Test
  void sessionAdvisoryLocksPinTheirHolder() throws Exception {
    try (Connection c = connect(two)) {
      assertThat(one(c, "SELECT pg_advisory_lock(4242)::text")).isEmpty(); // void
      String pid = one(c, "SELECT pg_backend_pid()");
      assertPinned(two);
      assertThat(pg.primary().sql("pins", "SELECT pg_try_advisory_lock(4242)"))
          .containsExactly(List.of("f"));
      assertThat(
              one(
                  c,
                  "SELECT count(*) FROM pg_locks"
                      + " WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"))
          .isEqualTo("1");
      assertThat(one(c, "SELECT pg_backend_pid()")).isEqualTo(pid);
      assertPinned(two);
    }
    // The client left: its lock goes with the reset (or closed) server connection.
    await()
        .atMost(Duration.ofSeconds(5))
        .until(
            () ->
                pg.primary()
                    .sql("pins", "SELECT pg_try_advisory_lock(4242)")
                    .equals(List.of(List.of("t"))));
  }

  // ------------------------------------------------------------------ WITH HOLD cursors

  @Test
  void holdCursorsStayReadableAcrossTransactionsWhilePinned() throws Exception {
    try (Connection c = connect(two)) {
      run(c, "DECLARE numbers CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 10) g");
      assertPinned(two);
      assertThat(fetch(c, "FETCH 3 FROM numbers")).containsExactly("1", "2", "3");
      c.setAutoCommit(false);
      assertThat(fetch(c, "FETCH 3 FROM numbers")).containsExactly("4", "5", "6");
      c.commit();
      c.setAutoCommit(true);
      assertThat(fetch(c, "FETCH 3 FROM numbers")).containsExactly("7", "8", "9");
      assertPinned(two);
    }
  }

  private static List<String> fetch(Connection c, String sql) throws SQLException {
    List<String> values = new ArrayList<>();
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      while (rs.next()) {
        values.add(rs.getString(1));
      }
    }
    return values;
  }

  // ------------------------------------------------------------------ SQL-level PREPARE

  /**
   * PREPARE pins (the statement lives on one server connection); EXECUTE works in later
   * transactions, another client never sees the statement, DEALLOCATE removes it, and DEALLOCATE
   * ALL releases the pin.
   */
  @Test
  void sqlPrepareExecuteDeallocateWorkWhilePinned() throws Exception {
    try (Connection c = connect(two);
        Connection other = connect(two)) {
      run(c, "PREPARE twice (int) AS SELECT $1 * 2");
      assertThat(one(c, "EXECUTE twice (21)")).isEqualTo("42");
      assertPinned(two);
      c.setAutoCommit(false);
      assertThat(one(c, "EXECUTE twice (5)")).isEqualTo("10");
      c.commit();
      c.setAutoCommit(true);
      assertThatThrownBy(() -> one(other, "EXECUTE twice (1)"))
          .satisfies(e -> assertThat(sqlError(e).getSQLState()).isEqualTo("26000"));

      run(c, "DEALLOCATE twice");
      assertThatThrownBy(() -> one(c, "EXECUTE twice (1)"))
          .satisfies(e -> assertThat(sqlError(e).getSQLState()).isEqualTo("26000"));
      run(c, "PREPARE thrice (int) AS SELECT $1 * 3");
      assertThat(one(c, "EXECUTE thrice (3)")).isEqualTo("9");

      run(c, "DEALLOCATE ALL");
      awaitReleased(two);
      assertThat(one(c, "SELECT 'unpinned'")).isEqualTo("unpinned");
    }
  }

  // ------------------------------------------------------------------ DISCARD/DEALLOCATE ALL

  /**
   * pgJDBC with {@code prepareThreshold=1} notices DISCARD ALL and DEALLOCATE ALL and prepares its
   * statements again. Through the proxy, with one server connection shared by two clients whose
   * statements (one with the same text, so the same proxy-wide statement) the command wiped out,
   * both clients keep working.
   */
  @Test
  void discardAllAndDeallocateAllKeepServerPreparedStatementsWorking() throws Exception {
    try (Connection a = connect(one, "prepareThreshold", "1");
        Connection b = connect(one, "prepareThreshold", "1");
        PreparedStatement aPlus = a.prepareStatement("SELECT ?::int + 1");
        PreparedStatement bPlus = b.prepareStatement("SELECT ?::int + 1");
        PreparedStatement bTimes = b.prepareStatement("SELECT ?::int * 10")) {
      exercise(aPlus, bPlus, bTimes);
      assertThat(preparedOnServer(b)).isPositive();

      for (String command : List.of("DISCARD ALL", "DEALLOCATE ALL", "DISCARD ALL")) {
        run(a, command);
        exercise(aPlus, bPlus, bTimes);
        awaitReleased(one);
      }
    }
  }

  private static void exercise(
      PreparedStatement aPlus, PreparedStatement bPlus, PreparedStatement bTimes)
      throws SQLException {
    for (int i = 0; i < 3; i++) {
      assertThat(value(aPlus, i)).isEqualTo(i + 1);
      assertThat(value(bPlus, i)).isEqualTo(i + 1);
      assertThat(value(bTimes, i)).isEqualTo(i * 10);
    }
  }

  private static int value(PreparedStatement ps, int parameter) throws SQLException {
    ps.setInt(1, parameter);
    try (ResultSet rs = ps.executeQuery()) {
      assertThat(rs.next()).isTrue();
      return rs.getInt(1);
    }
  }

  private static int preparedOnServer(Connection c) throws SQLException {
    return Integer.parseInt(one(c, "SELECT count(*) FROM pg_prepared_statements"));
  }

  // ------------------------------------------------------------------ waiting for a pin

  /**
   * One server connection, pinned by A: B's query waits in the pool (it neither fails nor runs on
   * A's session) and runs as soon as A releases the pin, by DISCARD ALL or by disconnecting.
   */
  @Test
  void withOneServerConnectionOthersWaitForThePinnedClient() throws Exception {
    try (Connection b = connect(one)) {
      for (boolean byDisconnect : List.of(false, true)) {
        Connection a = connect(one);
        try {
          run(a, "CREATE TEMP TABLE mine (v int)");
          assertPinned(one);
          CompletableFuture<String> bQuery =
              CompletableFuture.supplyAsync(
                  () -> {
                    try {
                      return one(
                          b,
                          "SELECT 'b served, temp table visible: '"
                              + " || (to_regclass('pg_temp.mine') IS NOT NULL)");
                    } catch (SQLException e) {
                      throw new IllegalStateException(e.getSQLState() + " " + e.getMessage(), e);
                    }
                  });
          await()
              .atMost(Duration.ofSeconds(3))
              .untilAsserted(() -> assertThat(waiting(one)).isEqualTo(1));
          assertThat(bQuery).isNotDone();
          run(a, "INSERT INTO mine VALUES (1)"); // A still has its session
          assertThat(bQuery).isNotDone();
          if (byDisconnect) {
            a.close();
          } else {
            run(a, "DISCARD ALL");
          }
          assertThat(bQuery.get(4, TimeUnit.SECONDS))
              .isEqualTo("b served, temp table visible: false");
        } finally {
          a.close();
        }
      }
    }
  }

  // ------------------------------------------------------------------ server_version

  /**
   * pgJDBC learns the server's version (and every other ParameterStatus) from the proxy exactly as
   * from the server, both for a first login and for one answered from the proxy's cached greeting.
   */
  @Test
  void serverVersionAndParametersAreTheServers() throws Exception {
    try (Connection direct = pg.primary().connect("pins")) {
      String version = one(direct, "SHOW server_version");
      Map<String, String> directParameters =
          new TreeMap<>(direct.unwrap(PGConnection.class).getParameterStatuses());
      for (int i = 0; i < 2; i++) {
        try (Connection proxied = connect(one)) {
          assertThat(proxied.getMetaData().getDatabaseProductVersion()).isEqualTo(version);
          assertThat(proxied.unwrap(PGConnection.class).getParameterStatus("server_version"))
              .isEqualTo(version);
          assertThat(new TreeMap<>(proxied.unwrap(PGConnection.class).getParameterStatuses()))
              .isEqualTo(directParameters);
        }
      }
    }
  }
}
