package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Every kind of bad input gets the documented SQLSTATE and a clean close, while a well-behaved
 * client on the same proxy keeps working throughout.
 */
class BadInputIT {
  static PgCluster pg;
  static RunningProxy proxy;
  static final int MAX_MESSAGE = 64 * 1024;

  private Connection bystander;
  private CompletableFuture<Void> bystanderLoop;
  private final AtomicBoolean stop = new AtomicBoolean();
  private final AtomicInteger bystanderQueries = new AtomicInteger();

  @BeforeAll
  static void start() throws Exception {
    pg = PgCluster.builder().start();
    proxy =
        RunningProxy.start(
            RunningProxy.database("app", "postgres", "127.0.0.1", pg.primary().port())
                + "limits: { max_message_size: "
                + MAX_MESSAGE
                + ", client_login_timeout: 1s }\n");
  }

  @AfterAll
  static void stopAll() {
    proxy.close();
    pg.close();
  }

  /** A client that must never notice anything while the others misbehave. */
  @BeforeEach
  void startBystander() throws SQLException {
    stop.set(false);
    bystanderQueries.set(0);
    bystander = proxy.connect("app", "postgres", null);
    bystanderLoop =
        CompletableFuture.runAsync(
            () -> {
              try (var s = bystander.createStatement()) {
                while (!stop.get()) {
                  try (var rs = s.executeQuery("SELECT 41 + 1")) {
                    rs.next();
                    if (rs.getInt(1) != 42) {
                      throw new AssertionError("wrong answer");
                    }
                  }
                  bystanderQueries.incrementAndGet();
                }
              } catch (SQLException e) {
                throw new RuntimeException(e);
              }
            });
  }

  @AfterEach
  void bystanderSawNothing() throws Exception {
    // The bystander must complete queries after the misbehaviour, not only before it.
    int seen = bystanderQueries.get();
    await()
        .atMost(Duration.ofSeconds(10))
        .until(() -> bystanderQueries.get() > seen + 1 || bystanderLoop.isDone());
    stop.set(true);
    bystanderLoop.get(10, TimeUnit.SECONDS); // rethrows any failure it had
    assertThat(bystanderQueries.get()).isGreaterThan(seen + 1);
    bystander.close();
  }

  private static Message fatalAndClosed(WireClient client) throws Exception {
    Message error = client.readError();
    assertThat(error.field('S')).isEqualTo("FATAL");
    assertThat(client.closedByPeer()).isTrue();
    return error;
  }

  /**
   * A server that answers the login with a 16 MiB message (no login message is more than a few
   * kilobytes) is refused before the proxy buffers it: the client's login fails at once with the
   * reason, and the proxy's other clients go on.
   */
  @Test
  void aServerSendingAHugeMessageAtLoginIsRefusedUnbuffered() throws Exception {
    try (java.net.ServerSocket fake = new java.net.ServerSocket(0)) {
      Thread server =
          new Thread(
              () -> {
                while (!fake.isClosed()) { // the proxy's health probe connects too
                  try {
                    java.net.Socket s = fake.accept();
                    new Thread(() -> answerHugely(s)).start();
                  } catch (java.io.IOException e) {
                    return; // closed
                  }
                }
              });
      server.start();
      try (RunningProxy toFake =
          RunningProxy.start(
              RunningProxy.database("fake", "fake", "127.0.0.1", fake.getLocalPort()))) {
        long t0 = System.nanoTime();
        SQLException refused = null;
        try (Connection c = toFake.connect("fake", "postgres", null)) {
          // not expected to get here
        } catch (SQLException e) {
          refused = e;
        }
        assertThat((Throwable) refused).as("the login through a server sending 16 MiB").isNotNull();
        assertThat(refused.getMessage()).contains("exceeds the maximum of 1048576");
        assertThat(refused.getSQLState()).isEqualTo("08001");
        assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(5));
      }
    }
  }

  /** Reads a StartupMessage, answers with the header of a 16 MiB message, waits for the close. */
  static void answerHugely(java.net.Socket socket) {
    try (socket) {
      java.io.DataInputStream in = new java.io.DataInputStream(socket.getInputStream());
      in.readFully(new byte[in.readInt() - 4]);
      java.io.DataOutputStream out = new java.io.DataOutputStream(socket.getOutputStream());
      out.writeByte('R');
      out.writeInt(16 << 20);
      out.write(new byte[8192]);
      out.flush();
      while (in.read() >= 0) {
        // until the other side hangs up
      }
    } catch (java.io.IOException e) {
      // the other side hung up first: what is expected of it
    }
  }

  @Test
  void garbageBeforeStartup() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
      Message error = fatalAndClosed(client);
      assertThat(error.sqlState()).isEqualTo("08P01");
      assertThat(error.field('M')).startsWith("cryoproxy: invalid length of startup packet");
    }
  }

  @Test
  void unknownProtocolVersion() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.send(WireClient.startupPacket(4 << 16, WireClient.params("postgres", "app")));
      // PostgreSQL answers an unsupported major version with 0A000; so does the proxy.
      Message error = fatalAndClosed(client);
      assertThat(error.sqlState()).isEqualTo("0A000");
      assertThat(error.field('M')).contains("unsupported frontend protocol 4.0");
    }
  }

  @Test
  void newerMinorVersionIsNegotiatedDownTo30() throws Exception {
    Map<String, String> params = WireClient.params("postgres", "app");
    params.put("_pq_.future_option", "on");
    try (WireClient client = new WireClient(proxy.port())) {
      client.send(WireClient.startupPacket((3 << 16) | 2, params));
      Message negotiate = client.read();
      assertThat(negotiate.type()).isEqualTo('v');
      String body = new String(negotiate.body(), StandardCharsets.UTF_8);
      assertThat(body).contains("_pq_.future_option");
      assertThat(client.readUntilReady()).isNull();
      client.send(WireClient.query("SELECT 1"));
      assertThat(client.readUntilReady()).isNull();
    }
  }

  @Test
  void oversizedMessage() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.startup("postgres", "app");
      assertThat(client.readUntilReady()).isNull();
      client.send(WireClient.query("SELECT '" + "x".repeat(MAX_MESSAGE) + "'"));
      Message error = fatalAndClosed(client);
      assertThat(error.sqlState()).isEqualTo("08P01");
      assertThat(error.field('M')).contains("exceeds the maximum of " + MAX_MESSAGE);
    }
  }

  @Test
  void invalidLengthAfterLogin() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.startup("postgres", "app");
      client.readUntilReady();
      client.send(new byte[] {'Q', 0, 0, 0, 2});
      assertThat(fatalAndClosed(client).sqlState()).isEqualTo("08P01");
    }
  }

  @Test
  void unknownMessageTypeAfterLogin() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.startup("postgres", "app");
      client.readUntilReady();
      client.send(WireClient.message('!', new byte[] {1, 2, 3}));
      Message error = fatalAndClosed(client);
      assertThat(error.sqlState()).isEqualTo("08P01");
      assertThat(error.field('M')).contains("invalid frontend message type '!'");
    }
  }

  @Test
  void malformedBodyIsRefusedByTheServerWithItsOwnError() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.startup("postgres", "app");
      client.readUntilReady();
      // A Query without its NUL terminator: framing is fine, the body is not.
      client.send(WireClient.message('Q', "SELECT 1".getBytes(StandardCharsets.UTF_8)));
      // PostgreSQL answers with its own protocol-violation ERROR; the proxy relays it untouched
      // and the session goes on, exactly as on a direct connection.
      Message error = client.readError();
      assertThat(error.sqlState()).isEqualTo("08P01");
      client.readUntilReady();
      client.send(WireClient.query("SELECT 1"));
      assertThat(client.readUntilReady()).isNull();
    }
  }

  @Test
  void truncatedStartupTimesOut() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      byte[] packet = WireClient.startupPacket(3 << 16, WireClient.params("postgres", "app"));
      client.send(java.util.Arrays.copyOf(packet, packet.length - 5));
      long started = System.nanoTime();
      Message error = fatalAndClosed(client);
      assertThat(error.sqlState()).isEqualTo("08P01");
      assertThat(error.field('M')).contains("did not complete login within 1000 ms");
      assertThat(System.nanoTime() - started).isLessThan(TimeUnit.SECONDS.toNanos(5));
    }
  }

  @Test
  void silentClientIsCutOff() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      assertThat(fatalAndClosed(client).sqlState()).isEqualTo("08P01");
    }
  }

  @Test
  void unknownDatabase() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.startup("postgres", "nope");
      Message error = fatalAndClosed(client);
      assertThat(error.sqlState()).isEqualTo("3D000");
      assertThat(error.field('M')).contains("database \"nope\" does not exist");
    }
  }

  @Test
  void missingUser() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.send(WireClient.startupPacket(3 << 16, Map.of("database", "app")));
      assertThat(fatalAndClosed(client).sqlState()).isEqualTo("28000");
    }
  }

  @Test
  void serverRefusalIsForwardedAsIs() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.startup("no_such_role", "app");
      Message error = fatalAndClosed(client);
      assertThat(error.sqlState()).isEqualTo("28000");
      assertThat(error.field('M')).isEqualTo("role \"no_such_role\" does not exist");
    }
  }

  @Test
  void serverDyingMidQuery() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.startup("postgres", "app");
      client.readUntilReady();
      client.send(WireClient.query("SELECT pg_terminate_backend(pg_backend_pid())"));
      Message error = client.readError();
      // The server says 57P01 itself before it goes; the proxy then closes the client.
      assertThat(error.sqlState()).isIn("57P01", "08006");
      assertThat(client.closedByPeer()).isTrue();
    }
  }

  @Test
  void gssEncryptionIsDeclined() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.send(new byte[] {0, 0, 0, 8, 0x04, (byte) 0xd2, 0x16, 0x30});
      assertThat(client.readByte()).isEqualTo('N');
      client.startup("postgres", "app");
      assertThat(client.readUntilReady()).isNull();
    }
  }
}
