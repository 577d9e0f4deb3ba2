package org.cryoprotect.proxy.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An in-test TCP relay between the proxy and a PostgreSQL server for failure drills (DESIGN §11):
 * it can add latency, blackhole traffic, cut connections with a reset, or refuse new ones.
 *
 * <p>Plain blocking sockets: one acceptor thread, and per relayed connection one thread per
 * direction. Each direction thread both reads its source and writes its destination; with a delay
 * set, what it read waits in a timestamped queue while the thread keeps reading with a read timeout
 * that ends when the head of the queue falls due, so latency is added per chunk without serialising
 * throughput. All threads are daemons whose names start with {@link #threadNamePrefix()}.
 *
 * <p>Blackhole semantics: while on, bytes read from either side are dropped (also those still
 * queued by a delay), and neither FIN nor RST is passed on, so both peers see a silent, open
 * connection. Connections accepted while the blackhole is on are never connected to the target and
 * stay silent until {@link #cut()} or {@link #close()}, even after the blackhole is lifted.
 */
public final class FaultRelay implements AutoCloseable {

  public static final String THREAD_NAME_PREFIX = "fault-relay-";
  private static final String HOST = "127.0.0.1";
  private static final int CONNECT_TIMEOUT_MS = 5_000;
  private static final int BUFFER_SIZE = 64 * 1024;
  // A direction stops reading while this much delayed data waits, which pushes back on the sender.
  private static final long MAX_QUEUED_BYTES = 4L * 1024 * 1024;
  private static final long CLOSE_JOIN_MS = 2_000;
  private static final long SLEEP_SLICE_NANOS = TimeUnit.MILLISECONDS.toNanos(20);
  private static final AtomicInteger INSTANCES = new AtomicInteger();

  private final String targetHost;
  private final int targetPort;
  private final ServerSocket server;
  private final String threadPrefix;
  private final Thread acceptor;
  private final Set<Pair> pairs = ConcurrentHashMap.newKeySet();
  private final Set<Socket> silent = ConcurrentHashMap.newKeySet();
  private final Set<Thread> workers = ConcurrentHashMap.newKeySet();
  private final AtomicLong accepted = new AtomicLong();
  private final AtomicLong connectionIds = new AtomicLong();
  private final AtomicBoolean closed = new AtomicBoolean();
  private volatile long delayNanos;
  private volatile boolean blackhole;
  private volatile boolean refuse;
  private volatile long holdNewNanos;

  private FaultRelay(String targetHost, int targetPort, ServerSocket server) {
    this.targetHost = targetHost;
    this.targetPort = targetPort;
    this.server = server;
    this.threadPrefix = THREAD_NAME_PREFIX + INSTANCES.incrementAndGet() + "-";
    this.acceptor = new Thread(this::acceptLoop, threadPrefix + "acceptor");
    acceptor.setDaemon(true);
  }

  /** Listens on an ephemeral loopback port and relays every connection to the target. */
  public static FaultRelay start(String targetHost, int targetPort) {
    ServerSocket server;
    try {
      server = new ServerSocket();
      server.bind(new InetSocketAddress(InetAddress.getByName(HOST), 0), 64);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot bind fault relay", e);
    }
    FaultRelay relay = new FaultRelay(targetHost, targetPort, server);
    relay.acceptor.start();
    return relay;
  }

  public String host() {
    return HOST;
  }

  public int port() {
    return server.getLocalPort();
  }

  /** Every thread of this relay has a name starting with this. */
  public String threadNamePrefix() {
    return threadPrefix;
  }

  /**
   * Added one-way latency: each chunk read from either side is written on only {@code d} after it
   * was read. Order is kept per direction. {@link Duration#ZERO} turns it off for data read from
   * then on.
   */
  public void delay(Duration d) {
    if (d.isNegative()) {
      throw new IllegalArgumentException("negative delay " + d);
    }
    delayNanos = d.toNanos();
  }

  /**
   * While on, all traffic is silently dropped and new connections are accepted but never served.
   */
  public void blackhole(boolean on) {
    blackhole = on;
  }

  /** Resets every current connection on both sides; new connections are relayed as usual. */
  public void cut() {
    for (Pair pair : new ArrayList<>(pairs)) {
      pair.abort();
    }
    for (Socket socket : new ArrayList<>(silent)) {
      silent.remove(socket);
      abort(socket);
    }
  }

  /**
   * New connections are accepted at once but connected to the target only {@code d} later, so what
   * their client sends first (a CancelRequest, a startup packet) arrives late; existing connections
   * are unaffected. {@link Duration#ZERO} turns it off.
   */
  public void holdNew(Duration d) {
    if (d.isNegative()) {
      throw new IllegalArgumentException("negative hold " + d);
    }
    holdNewNanos = d.toNanos();
  }

  /** While on, new connections are accepted and reset at once; existing ones are unaffected. */
  public void refuse(boolean on) {
    refuse = on;
  }

  /** Relayed connection pairs currently open (silent blackholed connections are not counted). */
  public int activeConnections() {
    return pairs.size();
  }

  /** Every connection ever accepted, including refused and blackholed ones. */
  public long connectionsAccepted() {
    return accepted.get();
  }

  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    try {
      server.close();
    } catch (IOException ignored) {
      // nothing to do
    }
    cut();
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(CLOSE_JOIN_MS);
    join(acceptor, deadline);
    for (Thread worker : new ArrayList<>(workers)) {
      join(worker, deadline);
    }
  }

  @Override
  public String toString() {
    return "FaultRelay[" + HOST + ":" + port() + " -> " + targetHost + ":" + targetPort + "]";
  }

  private static void join(Thread thread, long deadlineNanos) {
    long remainingMs = TimeUnit.NANOSECONDS.toMillis(deadlineNanos - System.nanoTime());
    if (remainingMs <= 0 || thread == Thread.currentThread()) {
      return;
    }
    try {
      thread.join(remainingMs);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private void acceptLoop() {
    while (!closed.get()) {
      Socket client;
      try {
        client = server.accept();
      } catch (IOException e) {
        if (closed.get() || server.isClosed()) {
          return;
        }
        pause(10); // e.g. out of file descriptors: try again shortly
        continue;
      }
      accepted.incrementAndGet();
      long id = connectionIds.incrementAndGet();
      if (closed.get() || refuse) {
        abort(client);
      } else if (blackhole) {
        startSilent(client, id);
      } else if (holdNewNanos > 0) {
        long hold = holdNewNanos;
        startWorker(
            threadPrefix + "conn-" + id + "-held",
            () -> {
              pause(TimeUnit.NANOSECONDS.toMillis(hold));
              startPair(client, id);
            });
      } else {
        startPair(client, id);
      }
    }
  }

  private void startSilent(Socket client, long id) {
    silent.add(client);
    if (closed.get()) {
      silent.remove(client);
      abort(client);
      return;
    }
    startWorker(
        threadPrefix + "conn-" + id + "-silent",
        () -> {
          try {
            client.setTcpNoDelay(true);
            InputStream in = client.getInputStream();
            byte[] sink = new byte[BUFFER_SIZE];
            while (in.read(sink) >= 0) {
              // dropped: a blackholed connection is never answered
            }
          } catch (IOException expected) {
            // the peer went away, or cut()/close() reset the socket
          }
          // After a FIN the socket simply stays silent until cut() or close().
        });
  }

  private void startPair(Socket client, long id) {
    Pair pair = new Pair(client, new Socket(), id);
    pairs.add(pair);
    if (closed.get()) {
      pair.abort();
      return;
    }
    startWorker(threadPrefix + "conn-" + id + "-up", pair::connectAndRun);
  }

  private void startWorker(String name, Runnable body) {
    Thread thread =
        new Thread(
            () -> {
              try {
                body.run();
              } finally {
                workers.remove(Thread.currentThread());
              }
            },
            name);
    thread.setDaemon(true);
    workers.add(thread);
    thread.start();
  }

  /** Close with SO_LINGER 0, so the peer sees a reset rather than an orderly end. */
  private static void abort(Socket socket) {
    try {
      if (!socket.isClosed()) {
        socket.setSoLinger(true, 0);
      }
    } catch (IOException ignored) {
      // not connected (yet): a plain close will do
    }
    closeQuietly(socket);
  }

  private static void closeQuietly(Socket socket) {
    try {
      socket.close();
    } catch (IOException ignored) {
      // nothing to do
    }
  }

  private static void pause(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** One client connection and its connection to the target. */
  private final class Pair {
    final Socket client;
    final Socket target;
    final long id;
    final AtomicBoolean done = new AtomicBoolean();
    final AtomicInteger liveDirections = new AtomicInteger(2);

    Pair(Socket client, Socket target, long id) {
      this.client = client;
      this.target = target;
      this.id = id;
    }

    void connectAndRun() {
      try {
        client.setTcpNoDelay(true);
        target.setTcpNoDelay(true);
        target.connect(new InetSocketAddress(targetHost, targetPort), CONNECT_TIMEOUT_MS);
      } catch (IOException e) {
        abort(); // target refused or unreachable (or cut()/close() while connecting)
        return;
      }
      if (done.get()) {
        return;
      }
      startWorker(threadPrefix + "conn-" + id + "-down", new Direction(this, target, client));
      new Direction(this, client, target).run();
    }

    /** Reset both sides. */
    void abort() {
      if (done.compareAndSet(false, true)) {
        FaultRelay.abort(client);
        FaultRelay.abort(target);
        pairs.remove(this);
      }
    }

    /** One direction ended in an orderly way; once both have, the pair is closed. */
    void directionDone() {
      if (liveDirections.decrementAndGet() == 0 && done.compareAndSet(false, true)) {
        closeQuietly(client);
        closeQuietly(target);
        pairs.remove(this);
      }
    }
  }

  private record Chunk(byte[] bytes, long dueNanos) {}

  /** Copies one direction: reads {@code src}, writes {@code dst}, applying delay and blackhole. */
  private final class Direction implements Runnable {
    final Pair pair;
    final Socket src;
    final Socket dst;
    final ArrayDeque<Chunk> queue = new ArrayDeque<>();
    long queuedBytes;
    int currentTimeoutMs = -1;

    Direction(Pair pair, Socket src, Socket dst) {
      this.pair = pair;
      this.src = src;
      this.dst = dst;
    }

    @Override
    public void run() {
      InputStream in;
      OutputStream out;
      try {
        in = src.getInputStream();
        out = dst.getOutputStream();
      } catch (IOException e) {
        pair.abort();
        return;
      }
      byte[] buf = new byte[BUFFER_SIZE];
      while (!pair.done.get()) {
        try {
          flushDue(out);
        } catch (IOException e) {
          pair.abort(); // the destination is gone: reset the other side as well
          return;
        }
        if (queuedBytes >= MAX_QUEUED_BYTES) {
          sleepUntil(queue.peekFirst().dueNanos());
          continue;
        }
        int n;
        try {
          setTimeout(queue.isEmpty() ? 0 : millisUntil(queue.peekFirst().dueNanos()));
          n = in.read(buf);
        } catch (SocketTimeoutException e) {
          continue; // the head of the queue fell due
        } catch (IOException e) {
          if (pair.done.get()) {
            return; // closed by cut()/close() or by the other direction
          }
          if (blackhole) {
            // A reset is lost in the blackhole like everything else; the other side hears nothing.
            pair.directionDone();
          } else {
            pair.abort();
          }
          return;
        }
        if (n < 0) {
          finishOnEof(out);
          return;
        }
        if (blackhole) {
          continue; // dropped
        }
        long now = System.nanoTime();
        long delay = delayNanos;
        if (delay == 0 && queue.isEmpty()) {
          try {
            out.write(buf, 0, n);
          } catch (IOException e) {
            pair.abort();
            return;
          }
        } else {
          queue.addLast(new Chunk(Arrays.copyOf(buf, n), now + delay));
          queuedBytes += n;
        }
      }
    }

    private void finishOnEof(OutputStream out) {
      try {
        while (!queue.isEmpty()) {
          sleepUntil(queue.peekFirst().dueNanos());
          if (pair.done.get()) {
            return;
          }
          flushDue(out);
        }
        if (!blackhole) {
          dst.shutdownOutput(); // pass the FIN on
        }
      } catch (IOException e) {
        if (!pair.done.get()) {
          pair.abort();
        }
        return;
      }
      pair.directionDone();
    }

    private void flushDue(OutputStream out) throws IOException {
      long now = System.nanoTime();
      while (!queue.isEmpty() && queue.peekFirst().dueNanos() - now <= 0) {
        Chunk chunk = queue.pollFirst();
        queuedBytes -= chunk.bytes().length;
        if (!blackhole) {
          out.write(chunk.bytes()); // in flight when the blackhole began: lost
        }
      }
    }

    private void setTimeout(int millis) throws IOException {
      if (millis != currentTimeoutMs) {
        src.setSoTimeout(millis);
        currentTimeoutMs = millis;
      }
    }

    private int millisUntil(long dueNanos) {
      long nanos = dueNanos - System.nanoTime();
      long millis = (nanos + 999_999) / 1_000_000;
      return (int) Math.max(1, Math.min(Integer.MAX_VALUE, millis));
    }

    /** Sleeps in short slices so that cut() and close() are not kept waiting by a long delay. */
    private void sleepUntil(long dueNanos) {
      long nanos;
      while (!pair.done.get() && (nanos = dueNanos - System.nanoTime()) > 0) {
        try {
          TimeUnit.NANOSECONDS.sleep(Math.min(nanos, SLEEP_SLICE_NANOS));
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          return;
        }
      }
    }
  }
}
