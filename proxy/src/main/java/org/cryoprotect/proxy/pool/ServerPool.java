package org.cryoprotect.proxy.pool;

import io.netty.channel.EventLoop;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.Promise;
import io.netty.util.concurrent.ScheduledFuture;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.backend.ServerConnection;
import org.cryoprotect.proxy.backend.ServerCredentials;
import org.cryoprotect.proxy.backend.ServerException;
import org.cryoprotect.proxy.config.ProxyConfig.Pool;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The server connections of one {@link PoolKey}: idle ones (most recently used first), clients
 * waiting in arrival order, and the count of open or opening connections against the limits.
 *
 * <p>Every method takes the pool's lock for a few field updates only; connecting, closing and
 * completing a waiter's promise happen outside it or are asynchronous.
 */
public final class ServerPool {
  private static final Logger log = LoggerFactory.getLogger(ServerPool.class);

  private final PoolKey key;
  private final Pools pools;
  private volatile int size;
  private boolean paused;
  private boolean capped; // the database cap, not this pool's size, refused a connection
  private final java.util.Set<PooledServer> servers = new java.util.HashSet<>();
  private final java.util.Set<PoolClient> clients =
      java.util.concurrent.ConcurrentHashMap.newKeySet();
  private final java.util.concurrent.atomic.LongAdder queries =
      new java.util.concurrent.atomic.LongAdder();
  private final java.util.concurrent.atomic.LongAdder xacts =
      new java.util.concurrent.atomic.LongAdder();
  private final java.util.concurrent.atomic.LongAdder queryNanos =
      new java.util.concurrent.atomic.LongAdder();
  private final java.util.concurrent.atomic.LongAdder xactNanos =
      new java.util.concurrent.atomic.LongAdder();
  private final java.util.concurrent.atomic.LongAdder received =
      new java.util.concurrent.atomic.LongAdder();
  private final java.util.concurrent.atomic.LongAdder sent =
      new java.util.concurrent.atomic.LongAdder();
  private final ArrayDeque<PooledServer> idle = new ArrayDeque<>();
  private final ArrayDeque<Waiter> waiters = new ArrayDeque<>();
  private int open; // logged in or logging in, idle or not
  private volatile long usedNanos = System.nanoTime(); // last handed to a client or asked for
  private boolean retired; // forgotten by Pools while empty (see #prunable)
  private int opening;
  private ServerCredentials credentials;
  private StartupMessage startup;
  private final java.util.concurrent.ConcurrentHashMap<Map<String, String>, Map<String, String>>
      welcomes = new java.util.concurrent.ConcurrentHashMap<>();

  // Statistics for SHOW POOLS / SHOW STATS and metrics; written under the lock.
  private long checkouts;
  private long waitedNanosTotal;
  private long maxWaitNanos;
  private long timeouts;

  private final class Waiter {
    final Promise<PooledServer> promise;
    final EventLoop loop;
    final Map<String, String> settings;
    final long since = System.nanoTime();
    ScheduledFuture<?> timeout;
    ScheduledFuture<?> reserve;

    Waiter(Promise<PooledServer> promise, EventLoop loop, Map<String, String> settings) {
      this.promise = promise;
      this.loop = loop;
      this.settings = settings;
    }
  }

  /** How many waiters a released connection looks at for one that has its settings. */
  static final int AFFINITY_WAITERS = 8;

  /** The first waiter is never passed over once it has waited this long. */
  static final long AFFINITY_MAX_DELAY_NANOS = TimeUnit.MILLISECONDS.toNanos(2);

  ServerPool(PoolKey key, Pools pools, int size) {
    this.key = key;
    this.pools = pools;
    this.size = size;
  }

  public PoolKey key() {
    return key;
  }

  public int size() {
    return size;
  }

  /** RELOAD changed the pool size: more waiters may be served now, or fewer kept later. */
  public void resize(int newSize) {
    size = newSize;
    serveWaiters();
  }

  // Client bookkeeping and statistics, for SHOW CLIENTS/POOLS/STATS and metrics.

  public void joined(PoolClient client) {
    clients.add(client);
    used();
  }

  /** A client is about to use this pool: it is not pruned for a while. */
  void used() {
    usedNanos = System.nanoTime();
  }

  /**
   * Empty (no client, no server connection, nobody waiting) and unused for {@code afterNanos}:
   * Pools may forget it, so that pools made for role names that came and went (trust mode lets a
   * client pick any) do not pile up. Marks it retired when true.
   */
  synchronized boolean prunable(long now, long afterNanos) {
    if (!clients.isEmpty() || open > 0 || !waiters.isEmpty() || now - usedNanos < afterNanos) {
      return false;
    }
    retired = true;
    return true;
  }

  public void left(PoolClient client) {
    clients.remove(client);
  }

  public java.util.Collection<PoolClient> clients() {
    return clients;
  }

  public synchronized List<PooledServer> servers() {
    return new ArrayList<>(servers);
  }

  /** One client query (Query, Sync or function call) answered. */
  public void query(long nanos) {
    queries.increment();
    queryNanos.add(nanos);
  }

  /** One client transaction ended (ReadyForQuery 'I'). */
  public void transaction(long nanos) {
    xacts.increment();
    xactNanos.add(nanos);
  }

  public void received(long bytes) {
    received.add(bytes);
  }

  public void sent(long bytes) {
    sent.add(bytes);
  }

  public boolean isPaused() {
    synchronized (this) {
      return paused;
    }
  }

  /** PAUSE: lend no server connection until {@link #resume}; clients queue meanwhile. */
  public synchronized void pause() {
    paused = true;
  }

  public void resume() {
    synchronized (this) {
      paused = false;
    }
    serveWaiters();
  }

  /** Hands idle or new connections to waiting clients while limits allow. */
  void serveWaiters() {
    while (true) {
      Waiter next;
      PooledServer server = null;
      List<PooledServer> stale = new ArrayList<>();
      synchronized (this) {
        if (paused || waiters.isEmpty()) {
          return;
        }
        next = waiters.peekFirst();
        server = takeIdle(next.loop, next.settings, stale);
        if (server == null && !tryReserve(0)) {
          stale.forEach(s -> s.channel().close());
          return;
        }
        waiters.pollFirst();
        if (server != null) {
          checkouts++; // a new connection counts its checkout when it is open (see open())
        }
      }
      stale.forEach(s -> s.channel().close());
      cancelTimers(next);
      if (server != null) {
        if (!next.promise.trySuccess(server)) {
          release(server);
        }
      } else {
        open(next.loop, next.promise);
      }
    }
  }

  private Pool limits() {
    return pools.config().pool();
  }

  /**
   * A server connection for a client on {@code loop}: an idle one (preferring one that already has
   * the client's session {@code settings}, then one on the same loop), a new one while the pool is
   * below its size, or the next one released. Fails with 53300 after {@code pool.wait_timeout}, or
   * with the server's error when no connection can be opened.
   */
  public Future<PooledServer> acquire(
      EventLoop loop,
      StartupMessage startup,
      ServerCredentials credentials,
      Map<String, String> settings) {
    Promise<PooledServer> promise = loop.newPromise();
    boolean connect = false;
    List<PooledServer> stale = new ArrayList<>();
    used();
    synchronized (this) {
      if (retired) {
        retired = false; // a client that had it before it was forgotten: known again
        pools.adopt(this);
      }
      this.startup = startup;
      this.credentials = credentials;
      PooledServer server = paused ? null : takeIdle(loop, settings, stale);
      if (server != null) {
        checkouts++;
        promise.setSuccess(server);
      } else if (!paused && tryReserve(0)) {
        connect = true;
      } else {
        Waiter waiter = new Waiter(promise, loop, settings);
        waiters.add(waiter);
        waiter.timeout =
            loop.schedule(
                () -> timedOut(waiter), limits().waitTimeout().toMillis(), TimeUnit.MILLISECONDS);
        if (limits().reserveSize() > 0) {
          waiter.reserve =
              loop.schedule(
                  () -> reserveFor(waiter),
                  limits().reserveTimeout().toMillis(),
                  TimeUnit.MILLISECONDS);
        }
      }
    }
    stale.forEach(s -> s.channel().close());
    if (connect) {
      open(loop, promise);
    } else if (takeCapped()) {
      pools.makeRoom(this);
    }
    return promise;
  }

  private synchronized boolean takeCapped() {
    boolean was = capped;
    capped = false;
    return was && !waiters.isEmpty();
  }

  /** Closes the least recently used idle connection, if any; true when one was closed. */
  boolean closeOneIdle() {
    PooledServer victim;
    synchronized (this) {
      victim = idle.pollLast();
      if (victim == null) {
        return false;
      }
      forget(victim);
    }
    victim.channel().close();
    return true;
  }

  /**
   * Under the lock: the freshest usable idle connection that has {@code settings} applied (no SET
   * round trip before the client's statement: JWT clients of distinct subjects each find their own
   * claims), else the freshest on {@code loop} (no hop between event loops), else the freshest.
   */
  private PooledServer takeIdle(
      EventLoop loop, Map<String, String> settings, List<PooledServer> stale) {
    long now = System.nanoTime();
    long lifetime = limits().serverLifetime().toNanos();
    for (Iterator<PooledServer> it = idle.iterator(); it.hasNext(); ) {
      PooledServer s = it.next();
      if (!s.isUsable() || s.ageNanos(now) > lifetime) {
        it.remove();
        forget(s);
        stale.add(s);
      }
    }
    PooledServer sameLoop = null;
    PooledServer sameSettings = null;
    for (PooledServer s : idle) {
      boolean settled = settings != null && settings.equals(s.applied());
      if (settled && s.loop() == loop) {
        sameSettings = s;
        break;
      }
      if (settled && sameSettings == null) {
        sameSettings = s;
      } else if (sameLoop == null && s.loop() == loop) {
        sameLoop = s;
      }
    }
    PooledServer chosen =
        sameSettings != null ? sameSettings : sameLoop != null ? sameLoop : idle.peekFirst();
    if (chosen != null) {
      idle.remove(chosen);
      chosen.moveTo(ServerState.ACTIVE);
    }
    return chosen;
  }

  /**
   * Under the lock: the waiter a released connection goes to. The longest waiter, unless one of the
   * next few wants exactly the settings the connection has (then it skips the SET round trip the
   * first would pay) and the first has not yet waited {@link #AFFINITY_MAX_DELAY_NANOS}: so nobody
   * waits more than that longer for it, and JWT subjects sharing a saturated pool mostly find their
   * own claims in place.
   */
  private Waiter nextWaiterFor(PooledServer server) {
    Waiter first = waiters.peekFirst();
    Map<String, String> has = server.applied();
    if (first == null
        || has == null
        || has.equals(first.settings)
        || System.nanoTime() - first.since > AFFINITY_MAX_DELAY_NANOS) {
      return waiters.pollFirst();
    }
    int looked = 0;
    for (Iterator<Waiter> it = waiters.iterator(); it.hasNext() && looked < AFFINITY_WAITERS; ) {
      Waiter w = it.next();
      looked++;
      if (has.equals(w.settings)) {
        it.remove();
        return w;
      }
    }
    return waiters.pollFirst();
  }

  /** Under the lock: counts one more connection if the pool and the database cap allow it. */
  private boolean tryReserve(int extra) {
    if (open >= size + extra) {
      return false;
    }
    if (!pools.tryOpen(key.database())) {
      capped = true;
      return false;
    }
    open++;
    opening++;
    return true;
  }

  /** Under the lock: stop counting a connection, exactly once. */
  private void forget(PooledServer s) {
    s.moveTo(ServerState.CLOSED);
    if (!s.forgotten) {
      s.forgotten = true;
      servers.remove(s);
      open--;
      pools.opened(key.database(), -1);
    }
  }

  private void open(EventLoop loop, Promise<PooledServer> promise) {
    StartupMessage login;
    ServerCredentials creds;
    synchronized (this) {
      login = startup;
      creds = credentials;
    }
    long deadline = System.nanoTime() + limits().waitTimeout().toNanos();
    pools
        .connect(loop, key.node(), login, creds, deadline)
        .addListener(
            (Future<ServerConnection> f) -> {
              if (f.isSuccess()) {
                PooledServer server = new PooledServer(f.getNow(), this);
                synchronized (this) {
                  opening--;
                  servers.add(server);
                  checkouts++;
                }
                if (!promise.trySuccess(server)) {
                  release(server); // the client gave up meanwhile: someone else may use it
                }
              } else {
                List<Waiter> failed = new ArrayList<>();
                synchronized (this) {
                  opening--;
                  open--;
                  pools.opened(key.database(), -1);
                  if (open == 0) {
                    // Nothing will ever be released: waiting clients learn the reason now.
                    failed.addAll(waiters);
                    waiters.clear();
                  }
                }
                promise.tryFailure(f.cause());
                for (Waiter w : failed) {
                  cancelTimers(w);
                  w.promise.tryFailure(f.cause());
                }
              }
            });
  }

  /** See {@link Pools#nodeFailed}. */
  void nodeFailed(Throwable why, boolean active) {
    List<Waiter> failed;
    List<PooledServer> close;
    synchronized (this) {
      failed = new ArrayList<>(waiters);
      waiters.clear();
      close = new ArrayList<>(active ? servers : idle);
      for (PooledServer s : idle) {
        forget(s);
      }
      idle.clear();
    }
    for (Waiter w : failed) {
      cancelTimers(w);
      w.promise.tryFailure(why);
    }
    // Closing a connection in use reaches its client through the connection's own close handling.
    close.forEach(s -> s.channel().close());
  }

  /** A clean server connection comes back: to the longest waiter, or to the idle list. */
  public void release(PooledServer server) {
    server.detach();
    if (!server.settled(() -> release(server))) {
      return; // a cancel is on its way to it: lent out now, it could stop another's query
    }
    if (!server.isUsable()
        || server.ageNanos(System.nanoTime()) > limits().serverLifetime().toNanos()) {
      discard(server);
      return;
    }
    while (true) {
      Waiter next;
      synchronized (this) {
        next = paused ? null : nextWaiterFor(server);
        if (next == null) {
          server.idleSinceNanos = System.nanoTime();
          server.moveTo(ServerState.IDLE);
          idle.addFirst(server);
          return;
        }
        server.moveTo(ServerState.ACTIVE); // straight to the next client
        long waited = System.nanoTime() - next.since;
        checkouts++;
        waitedNanosTotal += waited;
        maxWaitNanos = Math.max(maxWaitNanos, waited);
      }
      cancelTimers(next);
      if (next.promise.trySuccess(server)) {
        return;
      }
    }
  }

  /** Closes a connection whose state is unknown, and opens a replacement for a waiting client. */
  public void discard(PooledServer server) {
    server.detach();
    server.channel().close();
    closed(server);
  }

  /** The server connection is gone (closed by either side); forget it once. */
  void closed(PooledServer server) {
    Waiter next = null;
    synchronized (this) {
      boolean wasIdle = idle.remove(server);
      forget(server);
      if (!paused && !waiters.isEmpty() && tryReserve(0)) {
        next = waiters.pollFirst();
      }
      if (wasIdle) {
        log.debug("{}: idle server connection closed", server);
      }
    }
    if (next != null) {
      cancelTimers(next);
      open(next.loop, next.promise);
    }
  }

  private void timedOut(Waiter waiter) {
    synchronized (this) {
      if (!waiters.remove(waiter)) {
        return;
      }
      timeouts++;
    }
    cancelTimers(waiter);
    waiter.promise.tryFailure(
        new ServerException(
            SqlState.TOO_MANY_CONNECTIONS,
            "no server connection for "
                + key
                + " became free within "
                + limits().waitTimeout().toMillis()
                + " ms (pool size "
                + size
                + ")"));
  }

  /** After {@code reserve_timeout}, a waiting client may use one of the reserve connections. */
  private void reserveFor(Waiter waiter) {
    synchronized (this) {
      if (!waiters.contains(waiter) || !tryReserve(limits().reserveSize())) {
        return;
      }
      waiters.remove(waiter);
    }
    cancelTimers(waiter);
    log.info(
        "{}: client waited {} ms, opening a reserve connection",
        key,
        limits().reserveTimeout().toMillis());
    open(waiter.loop, waiter.promise);
  }

  private static void cancelTimers(Waiter w) {
    if (w.timeout != null) {
      w.timeout.cancel(false);
    }
    if (w.reserve != null) {
      w.reserve.cancel(false);
    }
  }

  /** Closes idle connections past their lifetime or idle timeout, keeping {@code min_idle}. */
  void maintain(EventLoop loop) {
    List<PooledServer> close = new ArrayList<>();
    long now = System.nanoTime();
    boolean fill = false;
    synchronized (this) {
      for (Iterator<PooledServer> it = idle.descendingIterator(); it.hasNext(); ) {
        PooledServer s = it.next();
        boolean expired = s.ageNanos(now) > limits().serverLifetime().toNanos();
        boolean tooIdle =
            now - s.idleSinceNanos > limits().serverIdleTimeout().toNanos()
                && idle.size() - close.size() > limits().minIdle();
        if (!s.isUsable() || expired || tooIdle) {
          it.remove();
          forget(s);
          close.add(s);
        }
      }
      fill = credentials != null && idle.size() + opening < limits().minIdle() && tryReserve(0);
    }
    close.forEach(s -> s.channel().close());
    if (fill) {
      Promise<PooledServer> promise = loop.newPromise();
      promise.addListener(
          (Future<PooledServer> f) -> {
            if (f.isSuccess()) {
              release(f.getNow());
            }
          });
      open(loop, promise);
    }
  }

  /**
   * The ParameterStatus values to greet a client with, learned from the first login with the same
   * session settings, so that later logins need no server connection. Null when not known yet.
   */
  public Map<String, String> welcome(Map<String, String> settings) {
    return welcomes.get(settings);
  }

  public void welcome(Map<String, String> settings, Map<String, String> parameters) {
    if (welcomes.size() < 256) { // bounded: distinct settings are few in practice
      welcomes.put(settings, Map.copyOf(parameters));
    }
  }

  /** A consistent view for SHOW POOLS and metrics. */
  public synchronized Stats stats() {
    return new Stats(
        key,
        size,
        open,
        idle.size(),
        opening,
        waiters.size(),
        oldestWaitNanos(),
        checkouts,
        waitedNanosTotal,
        maxWaitNanos,
        timeouts,
        queries.sum(),
        xacts.sum(),
        queryNanos.sum(),
        xactNanos.sum(),
        received.sum(),
        sent.sum(),
        paused);
  }

  /** SHOW POOLS' numbers for this pool, client states included. */
  public org.cryoprotect.proxy.metrics.PoolStats poolStats() {
    int active = 0;
    int waiting = 0;
    int idleClients = 0;
    for (PoolClient c : clients) {
      switch (c.state()) {
        case "active" -> active++;
        case "waiting" -> waiting++;
        default -> idleClients++;
      }
    }
    Map<String, Integer> states = serverStates();
    Stats s = stats();
    return new org.cryoprotect.proxy.metrics.PoolStats(
        key.database(),
        key.role(),
        key.node().toString(),
        active,
        waiting,
        idleClients,
        states.getOrDefault("active", 0),
        states.getOrDefault("active_cancel", 0),
        states.getOrDefault("being_canceled", 0),
        states.getOrDefault("idle", 0),
        states.getOrDefault("used", 0),
        states.getOrDefault("tested", 0),
        s.opening(),
        s.size(),
        s.oldestWaitNanos() / 1000);
  }

  /** How many of the pool's connections are in each state, as SHOW SERVERS names them. */
  synchronized Map<String, Integer> serverStates() {
    Map<String, Integer> counts = new java.util.HashMap<>();
    long checkDelay = limits().serverCheckDelay().toNanos();
    for (PooledServer s : servers) {
      counts.merge(s.label(checkDelay), 1, Integer::sum);
    }
    return counts;
  }

  /** A connection's state as SHOW SERVERS prints it ({@link PooledServer#label}). */
  public String stateLabel(PooledServer server) {
    return server.label(limits().serverCheckDelay().toNanos());
  }

  private long oldestWaitNanos() {
    Waiter first = waiters.peekFirst();
    return first == null ? 0 : System.nanoTime() - first.since;
  }

  public record Stats(
      PoolKey key,
      int size,
      int open,
      int idle,
      int opening,
      int waiting,
      long oldestWaitNanos,
      long checkouts,
      long waitedNanosTotal,
      long maxWaitNanos,
      long timeouts,
      long queries,
      long transactions,
      long queryNanos,
      long transactionNanos,
      long bytesReceived,
      long bytesSent,
      boolean paused) {
    public int active() {
      return open - idle - opening;
    }
  }
}
