package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.cryoprotect.proxy.testing.WireClient.Reply;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Well-formed but random extended-protocol conversations: named and unnamed statements prepared in
 * one round trip and bound in later ones, Describe and Close, bad parameters, simple Queries (which
 * drop the unnamed statement), and transactions with a portal fetched a few rows per Sync. Sixteen
 * clients run their scripts at once over a pool of two; each script is also run alone directly
 * against PostgreSQL, and every reply must be the same (message types, rows, command tags,
 * SQLSTATEs, transaction status). Scripts come from a seed per client ({@code -Dfuzz.seed}).
 */
@PgTest
class ExtendedProtocolFuzzIT {
  static final long SEED = Long.getLong("fuzz.seed", 4242);
  static final int CLIENTS = 16;
  static final int STEPS = 120;

  /** Statements the scripts use; %d is the client's id (texts shared by all clients, and not). */
  static final String[] QUERIES = {
    "SELECT $1::int + 1",
    "SELECT 'c' || $1::text",
    "SELECT generate_series(1, $1::int)",
    "SELECT %d * $1::int",
  };

  static PgCluster pg;
  static RunningProxy proxy;

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("app");
    proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 2, wait_timeout: 30s }\n"
                + RunningProxy.database("app", "app", "127.0.0.1", pg.primary().port()));
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
  }

  @Test
  void sixteenClientsOverTwoConnectionsAnswerAsPostgresDoes() throws Exception {
    System.out.println(
        "ExtendedProtocolFuzzIT seed: " + SEED + " (rerun with -Dfuzz.seed=" + SEED + ")");
    List<List<Step>> scripts = new ArrayList<>();
    for (int c = 0; c < CLIENTS; c++) {
      scripts.add(script(c, new Random(SEED * 1_000 + c)));
    }
    List<List<String>> direct = new ArrayList<>();
    for (List<Step> script : scripts) {
      direct.add(play(pg.primary().port(), script));
    }
    ExecutorService threads = Executors.newFixedThreadPool(CLIENTS);
    List<Future<List<String>>> proxied = new ArrayList<>();
    for (List<Step> script : scripts) {
      proxied.add(threads.submit(() -> play(proxy.port(), script)));
    }
    List<String> differences = new ArrayList<>();
    for (int c = 0; c < CLIENTS; c++) {
      List<String> got = proxied.get(c).get(2, TimeUnit.MINUTES);
      List<String> want = direct.get(c);
      for (int i = 0; i < want.size(); i++) {
        String g = i < got.size() ? got.get(i) : "<nothing>";
        if (!g.equals(want.get(i))) {
          differences.add(
              String.format(
                  "client %d step %d %s:%n    direct: %s%n    proxy:  %s",
                  c, i, scripts.get(c).get(i).what, shorten(want.get(i)), shorten(g)));
          break; // the first difference of a client; what follows may be its consequence
        }
      }
    }
    threads.shutdown();
    assertThat(differences)
        .as("clients whose replies differ from direct PostgreSQL (seed %d)", SEED)
        .isEmpty();
  }

  static String shorten(String transcript) {
    return transcript.length() <= 160
        ? transcript
        : transcript.substring(0, 120) + " ... " + transcript.substring(transcript.length() - 30);
  }

  /** One round trip: messages ending with exactly one Sync or Query. */
  record Step(String what, byte[] bytes) {}

  static List<String> play(int port, List<Step> script) throws Exception {
    List<String> out = new ArrayList<>();
    try (WireClient c = new WireClient(port)) {
      c.startup("postgres", "app");
      assertThat(c.readUntilReady()).isNull();
      for (Step step : script) {
        Reply r = c.ask(step.bytes);
        out.add(transcript(r));
        if (r.closed()) {
          break;
        }
      }
    }
    return out;
  }

  static String transcript(Reply r) {
    StringBuilder b = new StringBuilder();
    for (Message m : r.messages()) {
      switch (m.type()) {
        case 'S', 'K' -> {}
        case 'E' -> b.append("E:").append(m.sqlState()).append(' ');
        case 'N' -> b.append("N:").append(m.sqlState()).append(' ');
        default -> b.append(m).append(' ');
      }
    }
    return b.append(r.closed() ? "<closed>" : "").toString().strip();
  }

  /** A script the client model keeps sensible: it knows its statements, portal and transaction. */
  static List<Step> script(int id, Random random) {
    List<Step> steps = new ArrayList<>();
    Map<String, Integer> named = new LinkedHashMap<>(); // name -> query index
    boolean inTransaction = false;
    boolean portalOpen = false;
    int unnamed = -1; // query index of the unnamed statement, as the client believes it
    for (int n = 0; n < STEPS; n++) {
      int r = random.nextInt(100);
      if (inTransaction) {
        if (portalOpen && r < 50) {
          steps.add(step("Execute p 2", WireClient.execute("p", 2), WireClient.sync()));
        } else if (!portalOpen && r < 60) {
          int rows = 2 + random.nextInt(6);
          steps.add(
              step(
                  "Parse '' series, Bind p " + rows + ", Execute p 2",
                  WireClient.parse("", QUERIES[2]),
                  WireClient.bind("p", "", String.valueOf(rows)),
                  WireClient.execute("p", 2),
                  WireClient.sync()));
          portalOpen = true;
          unnamed = 2;
        } else if (r < 75) {
          steps.add(bindExecute(id, random, named, unnamed));
        } else {
          steps.add(step("COMMIT", WireClient.query("COMMIT")));
          inTransaction = false;
          portalOpen = false;
        }
        continue;
      }
      if (r < 15) {
        String name = "s" + random.nextInt(4);
        int q = random.nextInt(QUERIES.length);
        byte[] close = named.containsKey(name) ? WireClient.close('S', name) : new byte[0];
        steps.add(
            step(
                "Parse " + name + " q" + q,
                close,
                WireClient.parse(name, query(q, id)),
                WireClient.sync()));
        named.put(name, q);
      } else if (r < 30) {
        int q = random.nextInt(QUERIES.length);
        steps.add(
            step(
                "Parse '' q" + q + ", Describe",
                WireClient.parse("", query(q, id)),
                WireClient.describe('S', ""),
                WireClient.sync()));
        unnamed = q;
      } else if (r < 65) {
        steps.add(bindExecute(id, random, named, unnamed));
      } else if (r < 72 && !named.isEmpty()) {
        String name = pick(random, named);
        steps.add(step("Describe " + name, WireClient.describe('S', name), WireClient.sync()));
      } else if (r < 78 && !named.isEmpty()) {
        String name = pick(random, named);
        steps.add(step("Close " + name, WireClient.close('S', name), WireClient.sync()));
        named.remove(name);
      } else if (r < 84 && !named.isEmpty()) {
        String name = pick(random, named);
        steps.add(
            step(
                "Bind " + name + " bad parameter",
                WireClient.bind("", name, "not a number"),
                WireClient.execute("", 0),
                WireClient.sync()));
      } else if (r < 90) {
        // A simple Query drops the unnamed statement.
        steps.add(step("Query", WireClient.query("SELECT " + id + ", 'simple'")));
        unnamed = -1;
      } else {
        steps.add(step("BEGIN", WireClient.query("BEGIN")));
        inTransaction = true;
      }
    }
    if (inTransaction) {
      steps.add(step("COMMIT", WireClient.query("COMMIT")));
    }
    return steps;
  }

  /** Bind a named statement (or the unnamed one) to the unnamed portal, Execute, Sync. */
  static Step bindExecute(int id, Random random, Map<String, Integer> named, int unnamed) {
    boolean useNamed = !named.isEmpty() && (unnamed < 0 || random.nextBoolean());
    String name = useNamed ? pick(random, named) : "";
    int q = useNamed ? named.get(name) : unnamed;
    String param =
        switch (q) {
          case 1 -> "x" + id + "-" + random.nextInt(1000);
          case 2 -> String.valueOf(1 + random.nextInt(3));
          default -> String.valueOf(random.nextInt(1000));
        };
    return step(
        "Bind '" + name + "' (" + param + "), Execute",
        WireClient.bind("", name, param),
        WireClient.execute("", 0),
        WireClient.sync());
  }

  static String query(int q, int id) {
    return QUERIES[q].contains("%d") ? String.format(QUERIES[q], id) : QUERIES[q];
  }

  static String pick(Random random, Map<String, Integer> named) {
    List<String> names = new ArrayList<>(named.keySet());
    return names.get(random.nextInt(names.size()));
  }

  static Step step(String what, byte[]... parts) {
    return new Step(what, WireClient.concat(parts));
  }
}
