package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.Backends;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.cryoprotect.proxy.testing.WireClient.Reply;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A server connection lost inside a transaction, under transaction pooling, must never let the
 * client's later statements run outside that transaction: the client sees what PostgreSQL shows for
 * a failed transaction (the lost statement's error, then 25P02 for everything until the transaction
 * ends, and ROLLBACK for its COMMIT), or the proxy closes it with a FATAL. A connection lost under
 * a COMMIT leaves the outcome unknown, and the client must be told so (08007).
 *
 * <p>Each test moves 10 between two fresh accounts in one transaction and terminates the proxy's
 * server backend in the middle from a direct connection (as an operator or a failover would); the
 * accounts must end as they began.
 */
@PgTest
class TransactionAtomicityIT {
  /** What the statement that was running when its connection died may answer. */
  static final Set<String> LOST = Set.of("08006", "08003", "57P01");

  static final String IN_FAILED_TRANSACTION = "25P02";
  static final String NO_TRANSACTION_IN_PROGRESS = "25P01";
  static final Duration FIND_BACKEND = Duration.ofSeconds(10);

  /**
   * Terminated backends count as failures of the node; with the default breaker one termination
   * early in a proxy's life opens it for 5 s, and the next tests would only see "unavailable".
   */
  static final String LENIENT_BREAKER =
      "resilience:\n  breaker: { failure_rate: 100, minimum_calls: 10000, window: 10000 }\n";

  static PgCluster pg;
  static RunningProxy proxy;
  static final AtomicInteger ids = new AtomicInteger();
  @TempDir static Path dir;

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("app");
    pg.primary()
        .sql(
            "app",
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);"
                + " CREATE TABLE slow_commit (id int);"
                + " CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS"
                + " $$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;"
                // Runs at COMMIT: a commit that takes two seconds, long enough to cut it.
                + " CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON slow_commit"
                + " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()");
    proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 2, wait_timeout: 20s }\n"
                + LENIENT_BREAKER
                + RunningProxy.database("app", "app", "127.0.0.1", pg.primary().port()));
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
  }

  // ------------------------------------------------------------------ raw protocol

  /**
   * BEGIN; UPDATE a; SELECT pg_sleep(2) (its backend terminated meanwhile); UPDATE b; END, each a
   * simple Query. Today the proxy answers the sleep with 08006 and ReadyForQuery 'I', runs UPDATE b
   * on another server connection in autocommit, and END gets the WARNING 25P01 "there is no
   * transaction in progress": half of the transfer is applied.
   */
  @Test
  void statementsAfterALostStatementNeverRunOutsideItsTransaction() throws Exception {
    int[] acct = accounts();
    String marker = marker();
    List<Reply> replies = new ArrayList<>();
    try (WireClient c = login()) {
      CompletableFuture<Integer> killed =
          Backends.terminateLater(pg.primary(), "app", marker, "active", FIND_BACKEND);
      run(
          c,
          replies,
          "BEGIN",
          move(acct[0], -10),
          "SELECT pg_sleep(2) " + marker,
          move(acct[1], 10),
          "END");
      killed.get(15, TimeUnit.SECONDS);
    }
    assertUnchanged(acct, replies);
    assertThat(replies.get(0).tags()).as("%s", replies).containsExactly("BEGIN");
    assertThat(replies.get(1).tags()).as("%s", replies).containsExactly("UPDATE 1");
    assertAbortedThenRolledBack(replies.subList(2, replies.size()), LOST);
  }

  /**
   * BEGIN; UPDATE a; then, while the client is idle in its transaction, its backend is terminated;
   * UPDATE b; COMMIT. Today the terminated backend's FATAL reaches the client while it is idle, the
   * client's connection stays open with status 'I', UPDATE b runs in autocommit and COMMIT gets
   * 25P01.
   */
  @Test
  void idleInTransactionLossAbortsTheTransaction() throws Exception {
    int[] acct = accounts();
    String marker = marker();
    List<Reply> replies = new ArrayList<>();
    try (WireClient c = login()) {
      run(c, replies, "BEGIN", move(acct[0], -10) + " " + marker);
      assertThat(replies.get(1).status()).as("%s", replies).isEqualTo('T');
      Backends.terminateWhen(pg.primary(), "app", marker, "idle in transaction", FIND_BACKEND);
      Thread.sleep(200); // the proxy notices the closed server connection
      run(c, replies, move(acct[1], 10), "COMMIT");
    }
    assertUnchanged(acct, replies);
    List<Reply> after = replies.subList(2, replies.size());
    Set<String> first = new java.util.HashSet<>(LOST);
    first.add(IN_FAILED_TRANSACTION);
    assertAbortedThenRolledBack(after, first);
  }

  /**
   * A connection lost while COMMIT runs (here: a deferred constraint trigger makes the commit take
   * two seconds) leaves the outcome unknown: PostgreSQL may or may not have committed. The client
   * must hear 08007 (transaction resolution unknown), never 08006/57P01 saying that it failed.
   * Today it gets the server's 57P01 turned into an ERROR.
   */
  @Test
  void connectionLostUnderCommitIsTransactionResolutionUnknown() throws Exception {
    String marker = marker();
    List<Reply> replies = new ArrayList<>();
    try (WireClient c = login()) {
      run(c, replies, "BEGIN", "INSERT INTO slow_commit VALUES (1)");
      CompletableFuture<Integer> killed =
          Backends.terminateLater(pg.primary(), "app", marker, "active", FIND_BACKEND);
      run(c, replies, "COMMIT " + marker);
      killed.get(15, TimeUnit.SECONDS);
    }
    assertResolutionUnknown(replies.get(2), replies);
  }

  /** The same for a write in an implicit transaction: its commit is part of the statement. */
  @Test
  void connectionLostUnderAnImplicitTransactionWriteIsResolutionUnknown() throws Exception {
    String marker = marker();
    List<Reply> replies = new ArrayList<>();
    try (WireClient c = login()) {
      CompletableFuture<Integer> killed =
          Backends.terminateLater(pg.primary(), "app", marker, "active", FIND_BACKEND);
      run(c, replies, "INSERT INTO slow_commit VALUES (2) " + marker);
      killed.get(15, TimeUnit.SECONDS);
    }
    assertResolutionUnknown(replies.get(0), replies);
  }

  // ------------------------------------------------------------------ real clients

  /**
   * The same transfer as a psql script (no ON_ERROR_STOP, as scripts usually run). psql goes on
   * after errors, so it sends UPDATE b and END whatever happened to the sleep.
   */
  @Test
  void psqlScriptWithATerminatedBackendAppliesNothing() throws Exception {
    Path psql = ClientTools.require("psql");
    int[] acct = accounts();
    String marker = marker();
    Path script = dir.resolve("transfer-" + acct[0] + ".sql");
    Files.writeString(
        script,
        String.join(
            "\n",
            "BEGIN;",
            move(acct[0], -10) + ";",
            "SELECT pg_sleep(2) " + marker + ";",
            move(acct[1], 10) + ";",
            "END;",
            ""));
    CompletableFuture<Integer> killed =
        Backends.terminateLater(pg.primary(), "app", marker, "active", FIND_BACKEND);
    ProcessBuilder builder =
        new ProcessBuilder(
                psql.toString(),
                "-X",
                "-v",
                "VERBOSITY=verbose",
                "-f",
                script.toString(),
                "-h",
                "127.0.0.1",
                "-p",
                String.valueOf(proxy.port()),
                "-U",
                "postgres",
                "app")
            .redirectErrorStream(true);
    builder.environment().remove("PGOPTIONS");
    builder.environment().put("PGSSLMODE", "disable");
    builder.environment().put("PGCONNECT_TIMEOUT", "10");
    Process process = builder.start();
    String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(process.waitFor(60, TimeUnit.SECONDS)).isTrue();
    killed.get(15, TimeUnit.SECONDS);

    assertThat(balances(acct)).as("balances after:\n%s", output).containsExactly(100, 100);
    assertThat(output).doesNotContain("there is no transaction in progress");
    assertThat(output).doesNotContain(NO_TRANSACTION_IN_PROGRESS);
    boolean connectionLost =
        output.contains("connection to server was lost")
            || output.contains("server closed the connection unexpectedly");
    if (!connectionLost) {
      // psql prints each command's tag; after the lost sleep: ERROR 25P02, then END's ROLLBACK.
      assertThat(output).as(output).contains(IN_FAILED_TRANSACTION);
      assertThat(output.strip()).as(output).endsWith("ROLLBACK");
    }
  }

  /**
   * pgJDBC with autocommit off sends BEGIN in the same batch as the transaction's first statement.
   * That statement (which sleeps) loses its connection before the client saw ReadyForQuery 'T': the
   * proxy must still treat the client as inside a transaction. Today pgJDBC sees 'I', starts a new
   * transaction for UPDATE b and commits it.
   */
  @Test
  void jdbcFirstStatementOfATransactionLosesItsConnection() throws Exception {
    int[] acct = accounts();
    String marker = marker();
    List<String> events = new ArrayList<>();
    try (Connection c = proxy.connect("app", "postgres", null)) {
      c.setAutoCommit(false);
      CompletableFuture<Integer> killed =
          Backends.terminateLater(pg.primary(), "app", marker, "active", FIND_BACKEND);
      events.add(
          jdbc(
              c,
              "UPDATE accounts SET balance = balance - 10 FROM pg_sleep(2) s WHERE id = "
                  + acct[0]
                  + " "
                  + marker));
      killed.get(15, TimeUnit.SECONDS);
      events.add(jdbc(c, move(acct[1], 10)));
      events.add(commit(c));
    }
    assertThat(balances(acct)).as("balances after %s", events).containsExactly(100, 100);
    assertThat(events.get(0)).as("%s", events).startsWith("error");
    assertThat(events.get(1)).as("UPDATE b must fail: %s", events).startsWith("error");
  }

  /** pgJDBC, autocommit off: UPDATE a, its backend terminated while idle, UPDATE b, commit. */
  @Test
  void jdbcIdleInTransactionLosesItsConnection() throws Exception {
    int[] acct = accounts();
    String marker = marker();
    List<String> events = new ArrayList<>();
    try (Connection c = proxy.connect("app", "postgres", null)) {
      c.setAutoCommit(false);
      events.add(jdbc(c, move(acct[0], -10) + " " + marker));
      Backends.terminateWhen(pg.primary(), "app", marker, "idle in transaction", FIND_BACKEND);
      Thread.sleep(200);
      events.add(jdbc(c, move(acct[1], 10)));
      events.add(commit(c));
    }
    assertThat(balances(acct)).as("balances after %s", events).containsExactly(100, 100);
    assertThat(events.get(0)).as("%s", events).isEqualTo("ok 1");
    assertThat(events.get(1)).as("UPDATE b must fail: %s", events).startsWith("error");
  }

  // ------------------------------------------------------------------ helpers

  /**
   * {@code after} are the replies from the statement that lost its connection (or, for a loss while
   * idle, the next one) to the end of the transaction. Either the proxy closed the client with a
   * FATAL, or: the first has an error in {@code firstCodes} and status 'E', the next ones 25P02 and
   * 'E', and the last (COMMIT/END) the tag ROLLBACK and 'I'. No statement may have run, and none
   * may have been told "there is no transaction in progress".
   */
  static void assertAbortedThenRolledBack(List<Reply> after, Set<String> firstCodes) {
    String all = after.toString();
    for (Reply r : after) {
      for (Message n : r.notices()) {
        assertThat(n.sqlState()).as("notice in %s", all).isNotEqualTo(NO_TRANSACTION_IN_PROGRESS);
      }
      assertThat(r.tags())
          .as("a statement ran after its transaction's connection was lost: %s", all)
          .noneMatch(t -> t.startsWith("UPDATE") || t.startsWith("INSERT") || t.equals("COMMIT"));
    }
    boolean fatalSeen = false;
    for (int i = 0; i < after.size(); i++) {
      Reply r = after.get(i);
      fatalSeen |= r.hasFatal();
      if (r.closed()) {
        assertThat(fatalSeen).as("closed without a FATAL: %s", all).isTrue();
        assertThat(i).as("nothing is sent after the close: %s", all).isEqualTo(after.size() - 1);
        return;
      }
      assertThat(r.hasFatal()).as("a FATAL, but the connection stayed open: %s", all).isFalse();
      boolean last = i == after.size() - 1;
      if (last) {
        assertThat(r.error()).as("COMMIT/END of an aborted transaction: %s", all).isNull();
        assertThat(r.tags())
            .as("COMMIT/END of an aborted transaction: %s", all)
            .contains("ROLLBACK");
        assertThat(r.status()).as("%s", all).isEqualTo('I');
      } else {
        assertThat(r.error()).as("statement %d after the loss: %s", i, all).isNotNull();
        Set<String> allowed = i == 0 ? firstCodes : Set.of(IN_FAILED_TRANSACTION);
        assertThat(r.error().sqlState())
            .as("statement %d after the loss: %s", i, all)
            .isIn(allowed);
        assertThat(r.status()).as("statement %d after the loss: %s", i, all).isEqualTo('E');
      }
    }
  }

  /** The reply to a statement whose commit was in flight: 08007, as ERROR or FATAL. */
  static void assertResolutionUnknown(Reply commit, List<Reply> all) {
    assertThat(commit.errors()).as("%s", all).isNotEmpty();
    for (Message e : commit.errors()) {
      assertThat(e.sqlState())
          .as("a commit in flight may have committed: only 08007 is true; %s", all)
          .isEqualTo("08007");
    }
    if (!commit.closed()) {
      assertThat(commit.status()).as("%s", all).isEqualTo('I');
    }
  }

  /** Sends each statement, stopping after the first that found the connection closed. */
  static void run(WireClient c, List<Reply> replies, String... statements) throws Exception {
    for (String sql : statements) {
      if (!replies.isEmpty() && replies.get(replies.size() - 1).closed()) {
        return;
      }
      replies.add(c.ask(sql));
    }
  }

  /**
   * A client sends a transfer as one extended-protocol batch (two Executes in the batch's implicit
   * transaction), flushes, reads both CommandCompletes and vanishes before its Sync. PostgreSQL
   * never commits a batch whose Sync never came: directly, the backend exits and rolls it back.
   * Through the proxy the server connection outlives the client, and on 8124937 the proxy ended the
   * batch with its own Sync, committing half a conversation the client never finished. Both targets
   * must leave the accounts as they were, and the proxy must stay usable.
   */
  @ParameterizedTest
  @ValueSource(strings = {"direct", "proxy"})
  void aClientThatVanishesBeforeItsSyncCommitsNothing(String target) throws Exception {
    int[] acct = accounts();
    int port = target.equals("direct") ? pg.primary().port() : proxy.port();
    List<Character> seen = new ArrayList<>();
    try (WireClient c = new WireClient(port)) {
      c.startup("postgres", "app");
      assertThat(c.readUntilReady()).isNull();
      c.send(
          WireClient.concat(
              WireClient.parse("", move(acct[0], -10)),
              WireClient.bind("", ""),
              WireClient.execute("", 0),
              WireClient.parse("", move(acct[1], 10)),
              WireClient.bind("", ""),
              WireClient.execute("", 0),
              WireClient.flush()));
      while (seen.stream().filter(t -> t == 'C').count() < 2) {
        Message m = c.read();
        assertThat(m.type()).as("%s", m).isNotEqualTo('E');
        seen.add(m.type());
      }
    } // closed here: no Sync was ever sent
    await()
        .during(Duration.ofSeconds(1))
        .atMost(Duration.ofSeconds(5))
        .untilAsserted(
            () ->
                assertThat(balances(acct))
                    .as("%s after %s", target, seen)
                    .containsExactly(100, 100));
    try (WireClient c = login()) {
      assertThat(c.ask("SELECT 'still fine'").rows()).containsExactly(List.of("still fine"));
    }
  }

  static WireClient login() throws Exception {
    WireClient c = new WireClient(proxy.port());
    c.startup("postgres", "app");
    assertThat(c.readUntilReady()).isNull();
    return c;
  }

  /** Two fresh accounts holding 100 each. */
  static int[] accounts() {
    int a = ids.incrementAndGet() * 2;
    pg.primary().sql("app", "INSERT INTO accounts VALUES (" + a + ", 100), (" + (a + 1) + ", 100)");
    return new int[] {a, a + 1};
  }

  static List<Integer> balances(int[] acct) {
    List<Integer> out = new ArrayList<>();
    for (int id : acct) {
      out.add(
          Integer.parseInt(
              pg.primary()
                  .sql("app", "SELECT balance FROM accounts WHERE id = " + id)
                  .get(0)
                  .get(0)));
    }
    return out;
  }

  static void assertUnchanged(int[] acct, List<Reply> replies) {
    assertThat(balances(acct))
        .as("a transfer is all or nothing; the client saw %s", replies)
        .containsExactly(100, 100);
  }

  static String move(int id, int amount) {
    return "UPDATE accounts SET balance = balance + (" + amount + ") WHERE id = " + id;
  }

  /** A comment that finds the statement's backend in pg_stat_activity. */
  static String marker() {
    return "/* atomicity-" + ids.incrementAndGet() + "-" + System.nanoTime() + " */";
  }

  static String jdbc(Connection c, String sql) {
    try (Statement s = c.createStatement()) {
      return "ok " + s.executeUpdate(sql);
    } catch (SQLException e) {
      return "error " + e.getSQLState() + " " + e.getMessage();
    }
  }

  static String commit(Connection c) {
    try {
      c.commit();
      return "committed";
    } catch (SQLException e) {
      try {
        if (!c.isClosed()) {
          c.rollback();
        }
      } catch (SQLException ignored) {
        // the connection is gone: nothing to roll back on this side
      }
      return "commit error " + e.getSQLState() + " " + e.getMessage();
    }
  }
}
