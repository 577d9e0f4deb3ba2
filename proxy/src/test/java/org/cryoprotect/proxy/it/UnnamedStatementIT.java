package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.pgclient.PgConnectOptions;
import io.vertx.pgclient.PgConnection;
import io.vertx.sqlclient.Row;
import io.vertx.sqlclient.RowSet;
import io.vertx.sqlclient.Tuple;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Reply;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The unnamed prepared statement is the client's until it parses another one (or sends a simple
 * Query), across Syncs, as on a direct connection (protocol "Extended Query"). Clients such as
 * Vert.x prepare it in one round trip (Parse, Describe, Sync) and bind it in the next (Bind,
 * Execute, Sync): under transaction pooling the two round trips may land on different server
 * connections, or another client's Parse may overwrite it on the same one.
 */
@PgTest
class UnnamedStatementIT {
  static final int TEXT = 25;

  static PgCluster pg;
  static RunningProxy one;
  static RunningProxy two;

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("app");
    String db = RunningProxy.database("app", "app", "127.0.0.1", pg.primary().port());
    one = RunningProxy.start("pool: { mode: transaction, size: 1, wait_timeout: 20s }\n" + db);
    two = RunningProxy.start("pool: { mode: transaction, size: 2, wait_timeout: 20s }\n" + db);
  }

  @AfterAll
  static void stop() {
    if (one != null) {
      one.close();
    }
    if (two != null) {
      two.close();
    }
  }

  static int port(String target) {
    return switch (target) {
      case "direct" -> pg.primary().port();
      case "pool1" -> one.port();
      default -> two.port();
    };
  }

  /**
   * A and B each prepare the unnamed statement and wait for ReadyForQuery; then each binds and
   * executes it: A must get {@code A:x}, B {@code B:y}. Ten rounds, the order of the clients
   * alternating. Today, through the proxy, A gets {@code B:x} (B's Parse replaced the statement on
   * the shared server connection) or 26000 (its Bind went to a connection without it).
   */
  @ParameterizedTest
  @ValueSource(strings = {"direct", "pool1", "pool2"})
  void unnamedStatementFollowsItsClientAcrossSyncs(String target) throws Exception {
    List<String> outcomes = new ArrayList<>();
    try (WireClient a = login(port(target));
        WireClient b = login(port(target))) {
      for (int round = 0; round < 10; round++) {
        boolean aFirst = round % 2 == 0;
        WireClient first = aFirst ? a : b;
        WireClient second = aFirst ? b : a;
        prepare(first, aFirst ? "A:" : "B:");
        prepare(second, aFirst ? "B:" : "A:");
        outcomes.add("A " + run(a, "x" + round));
        outcomes.add("B " + run(b, "y" + round));
      }
    }
    List<String> expected = new ArrayList<>();
    for (int round = 0; round < 10; round++) {
      expected.add("A A:x" + round);
      expected.add("B B:y" + round);
    }
    assertThat(outcomes).as(target).isEqualTo(expected);
  }

  /**
   * Vert.x's {@code preparedQuery} without a statement cache (its default) parses the unnamed
   * statement, describes it, syncs, and then binds and executes it in a second round trip. Eight
   * connections over a pool of two, each asking for its own answers: every answer must be the one
   * asked for, as directly against PostgreSQL.
   */
  @Test
  void vertxPreparedQueriesOverAPoolOfTwo() throws Exception {
    List<String> direct = vertxRun(pg.primary().port());
    assertThat(direct).as("direct").isEmpty();
    List<String> proxied = vertxRun(two.port());
    assertThat(proxied).as("through the proxy (pool of 2)").isEmpty();
  }

  /** Returns every wrong answer or failure of 8 connections x 150 prepared queries. */
  static List<String> vertxRun(int port) throws Exception {
    int connections = 8;
    int queries = 150;
    Vertx vertx = Vertx.vertx();
    ConcurrentLinkedQueue<String> wrong = new ConcurrentLinkedQueue<>();
    AtomicInteger answered = new AtomicInteger();
    try {
      PgConnectOptions options =
          new PgConnectOptions()
              .setHost("127.0.0.1")
              .setPort(port)
              .setDatabase("app")
              .setUser("postgres")
              .setPassword("postgres")
              .setCachePreparedStatements(false);
      List<PgConnection> conns = new ArrayList<>();
      for (int i = 0; i < connections; i++) {
        conns.add(await(PgConnection.connect(vertx, options)));
      }
      List<Future<Void>> runs = new ArrayList<>();
      for (int i = 0; i < connections; i++) {
        runs.add(chain(conns.get(i), i, 0, queries, wrong, answered));
      }
      for (Future<Void> run : runs) {
        run.toCompletionStage().toCompletableFuture().get(120, TimeUnit.SECONDS);
      }
      for (PgConnection c : conns) {
        await(c.close());
      }
    } finally {
      vertx.close().toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }
    assertThat(answered.get() + wrong.size()).isEqualTo(connections * queries);
    List<String> list = new ArrayList<>(wrong);
    return list.subList(0, Math.min(20, list.size()));
  }

  /** Query {@code n} of connection {@code id}, then the next one once it is answered. */
  static Future<Void> chain(
      PgConnection c,
      int id,
      int n,
      int total,
      ConcurrentLinkedQueue<String> wrong,
      AtomicInteger answered) {
    if (n == total) {
      return Future.succeededFuture();
    }
    String param = "c" + id + "q" + n;
    String expected = param + "-" + id;
    return c.preparedQuery("SELECT $1::text || '-' || '" + id + "'")
        .execute(Tuple.of(param))
        .transform(
            ar -> {
              if (ar.failed()) {
                wrong.add(expected + ": " + ar.cause());
              } else {
                RowSet<Row> rows = ar.result();
                String got = rows.size() == 1 ? rows.iterator().next().getString(0) : null;
                if (expected.equals(got)) {
                  answered.incrementAndGet();
                } else {
                  wrong.add("asked " + expected + ", got " + got);
                }
              }
              return chain(c, id, n + 1, total, wrong, answered);
            });
  }

  static <T> T await(Future<T> f) throws Exception {
    return f.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
  }

  /**
   * An error before the client's Sync, which it sends only after reading the error (Parse, Flush;
   * then Bind, Execute, Sync, as a pipelining client does): PostgreSQL discards everything up to
   * the Sync and answers it with ReadyForQuery alone. Through a pool of one, the client's next
   * statement and another client's must then run as they do directly. On 8124937 the proxy queued
   * replies for the discarded messages that never came, and kept the only server connection from B
   * until B's wait timed out.
   */
  @ParameterizedTest
  @ValueSource(strings = {"direct", "pool1"})
  void theRestOfABatchAfterAnErrorIsDiscardedUpToItsSync(String target) throws Exception {
    try (WireClient a = login(port(target));
        WireClient b = login(port(target))) {
      a.send(WireClient.concat(WireClient.parse("", "SELECT nope"), WireClient.flush()));
      WireClient.Message error = a.read();
      assertThat(error.type()).as("%s", error).isEqualTo('E');
      assertThat(error.sqlState()).isEqualTo("42703");
      List<WireClient.Message> rest =
          a.exchange(
              WireClient.bind("", "", "x"),
              WireClient.execute("", 0),
              WireClient.query("SELECT 'skipped too'"),
              WireClient.sync());
      assertThat(rest).extracting(WireClient.Message::type).containsExactly('Z');
      assertThat(a.ask("SELECT 'a'").rows()).containsExactly(List.of("a"));
      assertThat(b.timeout(10_000).ask("SELECT 'b'").rows()).containsExactly(List.of("b"));
    }
  }

  static WireClient login(int port) throws Exception {
    WireClient c = new WireClient(port);
    c.startup("postgres", "app");
    assertThat(c.readUntilReady()).isNull();
    return c;
  }

  /** Parse of the unnamed statement, Describe, Sync; the round trip must succeed. */
  static void prepare(WireClient c, String prefix) throws Exception {
    Reply r =
        c.ask(
            WireClient.parse("", "SELECT '" + prefix + "' || $1", TEXT),
            WireClient.describe('S', ""),
            WireClient.sync());
    assertThat(r.errors()).as("prepare %s: %s", prefix, r).isEmpty();
  }

  /** Bind of the unnamed statement to the unnamed portal, Execute, Sync: the row, or the error. */
  static String run(WireClient c, String param) throws Exception {
    Reply r = c.ask(WireClient.bind("", "", param), WireClient.execute("", 0), WireClient.sync());
    if (r.error() != null) {
      return "error " + r.error().sqlState() + " " + r.error().field('M');
    }
    return r.rows().isEmpty() ? "no row " + r : r.rows().get(0).get(0);
  }
}
