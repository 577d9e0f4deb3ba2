package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Throws random and mutated protocol messages at the proxy, before and after login, while a
 * well-behaved client keeps running queries. Nothing may crash, hang, leak (leak detection is
 * paranoid and {@code LeakWatcher} fails the class on any report) or disturb the good client.
 */
class ProtocolFuzzIT {
  static final int MESSAGES = 10_000;
  static final long SEED = Long.getLong("fuzz.seed", System.nanoTime());

  static PgCluster pg;
  static RunningProxy proxy;

  @BeforeAll
  static void start() throws Exception {
    pg = PgCluster.builder().replicas(1).setting("log_statement", "all").start();
    proxy =
        RunningProxy.start(
            // Transaction mode with a replica: the fuzz also goes through prepared-statement
            // renaming, reply tracking, read routing with its replay window, and the return of
            // abused server connections to the pools.
            RunningProxy.database("app", "postgres", "127.0.0.1", pg.primary().port())
                + "    replicas: [ { host: 127.0.0.1, port: "
                + pg.replica(0).port()
                + " } ]\n"
                + "health: { interval: 200ms }\n"
                + "pool: { mode: transaction, size: 8, wait_timeout: 60s }\n"
                + "limits: { max_message_size: 65536, client_login_timeout: 2s }\n");
  }

  @AfterAll
  static void stop() {
    proxy.close();
    pg.close();
  }

  @Test
  void randomAndMutatedMessagesHurtNobodyElse() throws Exception {
    System.out.println("ProtocolFuzzIT seed: " + SEED + " (rerun with -Dfuzz.seed=" + SEED + ")");
    AtomicBoolean stop = new AtomicBoolean();
    AtomicInteger goodQueries = new AtomicInteger();
    CompletableFuture<Void> goodClient =
        CompletableFuture.runAsync(
            () -> {
              try (Connection c = proxy.connect("app", "postgres", null);
                  Statement s = c.createStatement()) {
                int i = 0;
                while (!stop.get()) {
                  try (ResultSet rs = s.executeQuery("SELECT " + i + " + 1")) {
                    rs.next();
                    assertThat(rs.getInt(1)).isEqualTo(i + 1);
                  }
                  i++;
                  goodQueries.incrementAndGet();
                }
              } catch (Exception e) {
                throw new RuntimeException(e);
              }
            });

    AtomicInteger sent = new AtomicInteger();
    ExecutorService workers = Executors.newFixedThreadPool(6);
    List<Future<?>> futures = new ArrayList<>();
    for (int w = 0; w < 6; w++) {
      Random random = new Random(SEED + w);
      futures.add(
          workers.submit(
              () -> {
                while (sent.get() < MESSAGES) {
                  sent.addAndGet(oneConnection(random));
                }
                return null;
              }));
    }
    for (Future<?> f : futures) {
      f.get(5, TimeUnit.MINUTES);
    }
    workers.shutdown();
    stop.set(true);
    try {
      goodClient.get(30, TimeUnit.SECONDS);
    } catch (java.util.concurrent.ExecutionException e) {
      printBackendHistory(e);
      throw e;
    }

    assertThat(sent.get()).isGreaterThanOrEqualTo(MESSAGES);
    assertThat(goodQueries.get()).isPositive();
    // Nothing hangs: every fuzz connection is gone, and the proxy still serves new clients.
    try {
      await().atMost(Duration.ofSeconds(10)).until(() -> proxy.server().clientCount() == 0);
    } catch (org.awaitility.core.ConditionTimeoutException e) {
      System.out.println("clientCount " + proxy.server().clientCount());
      proxy
          .server()
          .pools()
          .all()
          .forEach(
              p -> {
                System.out.println("pool " + p.stats());
                p.clients()
                    .forEach(cl -> System.out.println("  " + cl.address() + " " + cl.state()));
              });
      throw e;
    }
    try (Connection c = proxy.connect("app", "postgres", null);
        ResultSet rs = c.createStatement().executeQuery("SELECT 'still fine'")) {
      rs.next();
      assertThat(rs.getString(1)).isEqualTo("still fine");
    }
  }

  /** The server log of the backend whose error reached the good client, for the failure report. */
  private static void printBackendHistory(Exception failure) {
    String log = pg.primary().serverLog();
    String message = String.valueOf(failure.getCause());
    String text = message.replaceFirst("(?s).*?(FATAL|ERROR): ", "").lines().findFirst().orElse("");
    java.util.Set<String> pids = new java.util.LinkedHashSet<>();
    java.util.regex.Matcher line =
        java.util.regex.Pattern.compile("\\[(\\d+)\\] (.*)").matcher(log);
    while (line.find()) {
      if (!text.isEmpty() && line.group(2).contains(text)) {
        pids.add(line.group(1));
      }
    }
    for (String pid : pids) {
      System.out.println("----- primary backend " + pid + " -----");
      log.lines().filter(l -> l.contains("[" + pid + "]")).forEach(System.out::println);
    }
    if (pids.isEmpty()) {
      System.out.println(pg.logTails(200));
    }
  }

  /** One connection's worth of abuse; returns how many messages it sent. */
  private static int oneConnection(Random random) {
    try (WireClient client = new WireClient(proxy.port())) {
      client.timeout(300);
      int scenario = random.nextInt(10);
      if (scenario == 0) {
        client.send(randomBytes(random, 1 + random.nextInt(64)));
        drain(client);
        return 1;
      }
      if (scenario <= 2) {
        client.send(mutate(random, startup()));
        drain(client);
        return 1;
      }
      client.send(startup());
      if (client.readUntilReady() != null) {
        return 1;
      }
      int count = 1 + random.nextInt(40);
      for (int i = 0; i < count; i++) {
        byte[] message = validMessages(random);
        int kind = random.nextInt(10);
        if (kind < 4) {
          message = mutate(random, message);
        } else if (kind == 4) {
          message =
              WireClient.message(
                  (char) random.nextInt(256), randomBytes(random, random.nextInt(32)));
        }
        client.send(message);
      }
      drain(client);
      return count + 1;
    } catch (IOException e) {
      return 1; // the proxy closing on us mid-write is a fine outcome
    }
  }

  private static byte[] startup() {
    return WireClient.startupPacket(3 << 16, WireClient.params("postgres", "app"));
  }

  private static byte[] validMessages(Random random) {
    return switch (random.nextInt(6)) {
      case 0 -> WireClient.query("SELECT " + random.nextInt(1000));
      case 1 -> WireClient.message('P', cstrings("", "SELECT $1::int", "\0\0"));
      case 2 -> WireClient.message('B', new byte[] {0, 0, 0, 0, 0, 1, 0, 0, 0, 1, '7', 0, 0});
      case 3 -> WireClient.message('E', new byte[] {0, 0, 0, 0, 0});
      case 4 -> WireClient.message('S', new byte[0]);
      default -> WireClient.message('D', new byte[] {'S', 0});
    };
  }

  private static byte[] cstrings(String a, String b, String tail) {
    return (a + "\0" + b + "\0" + tail).getBytes(StandardCharsets.ISO_8859_1);
  }

  private static byte[] mutate(Random random, byte[] message) {
    byte[] copy = message.clone();
    switch (random.nextInt(4)) {
      case 0 -> copy[random.nextInt(copy.length)] ^= (byte) (1 << random.nextInt(8));
      case 1 -> {
        return java.util.Arrays.copyOf(copy, random.nextInt(copy.length));
      }
      case 2 -> {
        // Lie about the length, up or down.
        int at = copy.length > 4 && copy[0] != 0 ? 1 : 0;
        ByteBuffer.wrap(copy).putInt(at, random.nextInt(128) - 16);
      }
      default -> {
        byte[] longer = java.util.Arrays.copyOf(copy, copy.length + 1 + random.nextInt(16));
        for (int i = copy.length; i < longer.length; i++) {
          longer[i] = (byte) random.nextInt(256);
        }
        return longer;
      }
    }
    return copy;
  }

  private static byte[] randomBytes(Random random, int n) {
    byte[] bytes = new byte[n];
    random.nextBytes(bytes);
    return bytes;
  }

  private static void drain(WireClient client) throws IOException {
    client.closedByPeer();
  }
}
