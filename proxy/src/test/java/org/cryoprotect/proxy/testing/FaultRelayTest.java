package org.cryoprotect.proxy.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.fail;
import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.embedded.FreePorts;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The failure-drill relay, exercised against a tiny echo server: no PostgreSQL needed. */
class FaultRelayTest {

  private EchoServer echo;
  private FaultRelay relay;
  private final List<Socket> clients = new ArrayList<>();

  @BeforeEach
  void setUp() throws IOException {
    echo = new EchoServer();
    relay = FaultRelay.start("127.0.0.1", echo.port());
  }

  @AfterEach
  void tearDown() {
    for (Socket client : clients) {
      closeQuietly(client);
    }
    relay.close();
    echo.close();
  }

  @Test
  void forwardsBothWaysWithAMebibyteIntact() throws Exception {
    assertThat(relay.host()).isEqualTo("127.0.0.1");
    assertThat(relay.port()).isPositive().isNotEqualTo(echo.port());
    byte[] payload = new byte[1024 * 1024];
    new Random(42).nextBytes(payload);
    Socket client = connect();

    CompletableFuture<Void> writer =
        CompletableFuture.runAsync(
            () -> {
              try {
                client.getOutputStream().write(payload);
                client.getOutputStream().flush();
              } catch (IOException e) {
                throw new RuntimeException(e);
              }
            });
    byte[] back = readExactly(client, payload.length, Duration.ofSeconds(20));
    writer.get(20, TimeUnit.SECONDS);

    assertThat(back).isEqualTo(payload);
    assertThat(relay.activeConnections()).isEqualTo(1);
    assertThat(relay.connectionsAccepted()).isEqualTo(1);
  }

  @Test
  void delayHoldsDataInBothDirections() throws Exception {
    Socket client = connect();
    roundTrip(client, "warm-up");

    relay.delay(Duration.ofMillis(100));
    long started = System.nanoTime();
    roundTrip(client, "slow");
    Duration elapsed = Duration.ofNanos(System.nanoTime() - started);
    assertThat(elapsed).isBetween(Duration.ofMillis(200), Duration.ofSeconds(2));

    relay.delay(Duration.ZERO);
    Duration best = Duration.ofDays(1);
    for (int i = 0; i < 3; i++) {
      long t = System.nanoTime();
      roundTrip(client, "fast-" + i);
      Duration d = Duration.ofNanos(System.nanoTime() - t);
      best = d.compareTo(best) < 0 ? d : best;
    }
    assertThat(best).isLessThan(Duration.ofMillis(200));
  }

  @Test
  void delayKeepsOrderOfManySmallChunks() throws Exception {
    relay.delay(Duration.ofMillis(50));
    Socket client = connect();
    OutputStream out = client.getOutputStream();
    StringBuilder expected = new StringBuilder();
    for (int i = 0; i < 50; i++) {
      String piece = i + ",";
      expected.append(piece);
      out.write(piece.getBytes());
      out.flush();
    }
    long started = System.nanoTime();
    byte[] back = readExactly(client, expected.length(), Duration.ofSeconds(5));
    // 50 writes do not add up to 50 delays: they are in flight together.
    assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(2));
    assertThat(new String(back)).isEqualTo(expected.toString());
  }

  @Test
  void blackholeDropsTrafficButKeepsConnectionsOpen() throws Exception {
    Socket client = connect();
    roundTrip(client, "before");

    relay.blackhole(true);
    client.getOutputStream().write('x');
    client.setSoTimeout(500);
    assertThatThrownBy(() -> client.getInputStream().read())
        .isInstanceOf(SocketTimeoutException.class);

    Socket during = connect();
    during.getOutputStream().write("hello?".getBytes());
    during.setSoTimeout(500);
    assertThatThrownBy(() -> during.getInputStream().read())
        .isInstanceOf(SocketTimeoutException.class);
    assertThat(relay.connectionsAccepted()).isEqualTo(2);
    assertThat(relay.activeConnections()).isEqualTo(1);

    relay.blackhole(false);
    // The 'x' is gone for good; what is sent from now on goes through.
    roundTrip(client, "y");
    Socket after = connect();
    roundTrip(after, "after");
    // A connection accepted during the blackhole stays silent.
    assertThatThrownBy(() -> during.getInputStream().read())
        .isInstanceOf(SocketTimeoutException.class);
  }

  @Test
  void cutResetsCurrentConnectionsAndNewOnesWork() throws Exception {
    Socket first = connect();
    Socket second = connect();
    roundTrip(first, "one");
    roundTrip(second, "two");
    assertThat(relay.activeConnections()).isEqualTo(2);

    long started = System.nanoTime();
    relay.cut();
    assertClosedByPeer(first);
    assertClosedByPeer(second);
    assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(2));
    await().atMost(Duration.ofSeconds(5)).until(() -> relay.activeConnections() == 0);
    // The echo server saw its side reset too.
    await().atMost(Duration.ofSeconds(5)).until(() -> echo.openConnections() == 0);

    Socket fresh = connect();
    roundTrip(fresh, "again");
    assertThat(relay.activeConnections()).isEqualTo(1);
  }

  @Test
  void cutAlsoResetsSilentBlackholedConnections() throws Exception {
    relay.blackhole(true);
    Socket silent = connect();
    silent.setSoTimeout(300);
    assertThatThrownBy(() -> silent.getInputStream().read())
        .isInstanceOf(SocketTimeoutException.class);
    relay.cut();
    assertClosedByPeer(silent);
  }

  @Test
  void refuseResetsNewConnectionsOnly() throws Exception {
    Socket existing = connect();
    roundTrip(existing, "before");

    relay.refuse(true);
    long started = System.nanoTime();
    assertConnectionRefusedOrReset(relay);
    assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(2));
    roundTrip(existing, "still there");
    assertThat(relay.connectionsAccepted()).isEqualTo(2);
    assertThat(relay.activeConnections()).isEqualTo(1);

    relay.refuse(false);
    roundTrip(connect(), "welcome back");
  }

  @Test
  void aRefusingTargetClosesTheClient() throws Exception {
    try (FaultRelay nowhere = FaultRelay.start("127.0.0.1", FreePorts.next())) {
      assertConnectionRefusedOrReset(nowhere);
      await().atMost(Duration.ofSeconds(5)).until(() -> nowhere.activeConnections() == 0);
    }
  }

  @Test
  void clientCloseEndsTheRelayedPair() throws Exception {
    Socket client = connect();
    roundTrip(client, "bye");
    client.close();
    await().atMost(Duration.ofSeconds(5)).until(() -> relay.activeConnections() == 0);
    await().atMost(Duration.ofSeconds(5)).until(() -> echo.openConnections() == 0);
  }

  @Test
  void closeLeavesNoThreadsBehind() throws Exception {
    String prefix = relay.threadNamePrefix();
    assertThat(prefix).startsWith("fault-relay-");
    Socket relayed = connect();
    roundTrip(relayed, "relayed");
    relay.delay(Duration.ofSeconds(30));
    relayed.getOutputStream().write("stuck in the queue".getBytes());
    relay.blackhole(true);
    Socket silent = connect();
    await().atMost(Duration.ofSeconds(5)).until(() -> relay.connectionsAccepted() == 2);
    assertThat(liveThreads(prefix)).isNotEmpty();

    relay.close();
    relay.close(); // idempotent

    await().atMost(Duration.ofSeconds(5)).until(() -> liveThreads(prefix).isEmpty());
    assertClosedByPeer(relayed);
    assertClosedByPeer(silent);
    assertThat(relay.activeConnections()).isZero();
  }

  // --- helpers -------------------------------------------------------------------------------

  private Socket connect() throws IOException {
    Socket socket = new Socket();
    clients.add(socket);
    socket.connect(new InetSocketAddress(relay.host(), relay.port()), 5_000);
    socket.setTcpNoDelay(true);
    return socket;
  }

  private static void roundTrip(Socket socket, String text) throws IOException {
    byte[] bytes = text.getBytes();
    socket.getOutputStream().write(bytes);
    socket.getOutputStream().flush();
    assertThat(new String(readExactly(socket, bytes.length, Duration.ofSeconds(5))))
        .isEqualTo(text);
  }

  private static byte[] readExactly(Socket socket, int length, Duration timeout)
      throws IOException {
    socket.setSoTimeout((int) timeout.toMillis());
    InputStream in = socket.getInputStream();
    byte[] buf = new byte[length];
    int done = 0;
    while (done < length) {
      int n = in.read(buf, done, length - done);
      if (n < 0) {
        fail("EOF after " + done + " of " + length + " bytes");
      }
      done += n;
    }
    return buf;
  }

  /**
   * A new connection to the relay is accepted by the kernel but then reset, so the reset shows
   * either while connecting or on the first read.
   */
  private void assertConnectionRefusedOrReset(FaultRelay target) throws IOException {
    Socket socket = new Socket();
    clients.add(socket);
    try {
      socket.connect(new InetSocketAddress(target.host(), target.port()), 5_000);
    } catch (SocketException resetWhileConnecting) {
      return;
    }
    assertClosedByPeer(socket);
  }

  /** The peer ended the connection: EOF or a reset, promptly and not a read timeout. */
  private static void assertClosedByPeer(Socket socket) throws IOException {
    socket.setSoTimeout(2_000);
    try {
      int b = socket.getInputStream().read();
      assertThat(b).as("expected EOF, got a byte").isEqualTo(-1);
    } catch (SocketTimeoutException e) {
      fail("connection still open after 2 s", e);
    } catch (SocketException expected) {
      // connection reset
    }
  }

  private static List<Thread> liveThreads(String prefix) {
    List<Thread> live = new ArrayList<>();
    for (Thread thread : Thread.getAllStackTraces().keySet()) {
      if (thread.getName().startsWith(prefix) && thread.isAlive()) {
        live.add(thread);
      }
    }
    return live;
  }

  private static void closeQuietly(AutoCloseable closeable) {
    try {
      closeable.close();
    } catch (Exception ignored) {
      // best effort
    }
  }

  /** Echoes every byte back; one daemon thread per connection. */
  private static final class EchoServer implements AutoCloseable {
    private final ServerSocket server;
    private final List<Socket> open = new CopyOnWriteArrayList<>();

    EchoServer() throws IOException {
      server = new ServerSocket();
      server.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
      Thread acceptor = new Thread(this::acceptLoop, "echo-acceptor");
      acceptor.setDaemon(true);
      acceptor.start();
    }

    int port() {
      return server.getLocalPort();
    }

    int openConnections() {
      return open.size();
    }

    private void acceptLoop() {
      while (!server.isClosed()) {
        Socket socket;
        try {
          socket = server.accept();
        } catch (IOException e) {
          return;
        }
        open.add(socket);
        Thread echoer = new Thread(() -> echo(socket), "echo-conn");
        echoer.setDaemon(true);
        echoer.start();
      }
    }

    private void echo(Socket socket) {
      try (socket) {
        socket.setTcpNoDelay(true);
        InputStream in = socket.getInputStream();
        OutputStream out = socket.getOutputStream();
        byte[] buf = new byte[16 * 1024];
        int n;
        while ((n = in.read(buf)) >= 0) {
          out.write(buf, 0, n);
        }
      } catch (IOException expected) {
        // reset by the relay
      } finally {
        open.remove(socket);
      }
    }

    @Override
    public void close() {
      closeQuietly(server);
      for (Socket socket : open) {
        closeQuietly(socket);
      }
    }
  }
}
