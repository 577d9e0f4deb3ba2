package org.cryoprotect.proxy.pool;

import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.EventLoop;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import org.cryoprotect.proxy.backend.ServerConnection;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A server connection that belongs to a pool, and what the proxy knows about its session: the
 * parameters the server reported, the client session state last applied to it, and which
 * proxy-named prepared statements exist on it.
 *
 * <p>Threading: the state below is touched only by the current {@link ServerUser} on its loop. A
 * hand-over between users goes through the pool's lock, which orders one user's last write before
 * the next user's first read.
 */
public final class PooledServer {
  private static final Logger log = LoggerFactory.getLogger(PooledServer.class);

  private final ServerConnection connection;
  private final ServerPool pool;
  private final String nodeLabel;
  private final long createdNanos = System.nanoTime();
  private volatile ServerUser user;
  // Cancels (DESIGN §2): guarded by this.
  private Object owner; // whose cancel may reach this connection now, null when none
  private int cancels; // CancelRequests sent whose connection the server has not closed yet
  private Runnable afterCancels; // a release that waits for them
  private ServerState state = ServerState.ACTIVE; // made for a client; guarded by this
  // Guarded by the pool's lock.
  long idleSinceNanos = System.nanoTime();
  boolean forgotten;

  private final Map<String, String> reported;
  private volatile Map<String, String> applied = Map.of();
  private final LinkedHashMap<String, Boolean> prepared = new LinkedHashMap<>(64, 0.75f, true);
  private final Set<String> closeBeforeParse = new HashSet<>();
  private Object unnamed; // whose unnamed statement the server holds: null = none
  private boolean broken;

  PooledServer(ServerConnection connection, ServerPool pool) {
    this.connection = connection;
    this.pool = pool;
    this.reported = new HashMap<>(connection.parameters());
    this.nodeLabel = connection.node().toString();
    connection.channel().pipeline().addLast("pooled", new Relay());
  }

  public Channel channel() {
    return connection.channel();
  }

  public EventLoop loop() {
    return connection.channel().eventLoop();
  }

  public ServerConnection connection() {
    return connection;
  }

  public Endpoint node() {
    return connection.node();
  }

  /** {@code host:port}, as metrics name the node; made once, not at every checkout. */
  public String nodeLabel() {
    return nodeLabel;
  }

  public ServerPool pool() {
    return pool;
  }

  /** How long it sat in the pool before its current user took it. */
  public long idleNanos() {
    return System.nanoTime() - idleSinceNanos;
  }

  long ageNanos(long now) {
    return now - createdNanos;
  }

  /** Called by the new user on its loop once the pool handed this connection over. */
  public void attach(ServerUser user) {
    this.user = user;
    channel().config().setAutoRead(true);
    if (!channel().isActive()) {
      // It closed after the pool handed it out and before this: its close told nobody.
      user.loop().execute(() -> user.serverClosed(this));
    }
  }

  void detach() {
    this.user = null;
    synchronized (this) {
      owner = null;
    }
    // A slow client's backpressure may have paused reading; an idle connection must read, or it
    // would not notice that the server closed it.
    channel().config().setAutoRead(true);
  }

  /** Cancels of {@code client} may reach this connection until it is given back. */
  public synchronized void owner(Object client) {
    owner = client;
  }

  /**
   * A cancel of {@code client} is about to be sent for this connection: true when it is still the
   * client's, and then the connection is not lent to anyone else until {@link #cancelDone}. Without
   * this, a cancel that arrives after the client's query ended could stop another client's query.
   */
  public synchronized boolean beginCancel(Object client) {
    if (owner == null || owner != client) {
      return false;
    }
    cancels++;
    return true;
  }

  public void cancelDone() {
    Runnable release;
    synchronized (this) {
      if (--cancels > 0 || afterCancels == null) {
        return;
      }
      release = afterCancels;
      afterCancels = null;
    }
    release.run();
  }

  /**
   * True when no cancel is in flight; else the connection is {@link ServerState#BEING_CANCELED} and
   * {@code release} runs once the last one is done.
   */
  synchronized boolean settled(Runnable release) {
    if (cancels == 0) {
      return true;
    }
    moveTo(ServerState.BEING_CANCELED);
    afterCancels = release;
    return false;
  }

  /**
   * The one way a connection changes state: the pool moves it under its lock as its lists change,
   * the client session that holds it marks the proxy's own queries ({@link #testing}). A closed
   * connection stays closed (false); a move {@link ServerState#canMoveTo} refuses is a bug and
   * throws.
   */
  synchronized boolean moveTo(ServerState next) {
    if (state == ServerState.CLOSED) {
      return false;
    }
    if (!state.canMoveTo(next)) {
      throw new IllegalStateException(this + ": no move from " + state + " to " + next);
    }
    state = next;
    return true;
  }

  /** The holder runs the proxy's own query on it (check, settings, reset): {@code sv_tested}. */
  public synchronized void testing() {
    if (state == ServerState.ACTIVE) {
      moveTo(ServerState.TESTED);
    }
  }

  /** The proxy's own queries are done: the client's work runs on it. */
  public synchronized void tested() {
    if (state == ServerState.TESTED) {
      moveTo(ServerState.ACTIVE);
    }
  }

  /**
   * The state as SHOW SERVERS names it: PgBouncer's {@code used} for an idle connection that will
   * be checked before its next use, {@code active_cancel} for an active one a cancel is on its way
   * to.
   */
  synchronized String label(long checkDelayNanos) {
    if (state == ServerState.IDLE && idleNanos() > checkDelayNanos) {
      return "used";
    }
    if (state == ServerState.ACTIVE && cancels > 0) {
      return "active_cancel";
    }
    return state.label();
  }

  public boolean isUsable() {
    return !broken && channel().isActive();
  }

  /** The connection's state is unknown: it is closed instead of reused. */
  public void markBroken() {
    broken = true;
  }

  /** ParameterStatus values as the server last reported them. */
  public Map<String, String> reported() {
    return reported;
  }

  /** The client session state (parameter name to value) last applied on this connection. */
  public Map<String, String> applied() {
    return applied;
  }

  public void applied(Map<String, String> state) {
    this.applied = state;
  }

  public boolean hasPrepared(String name) {
    return prepared.get(name) != null; // get() also refreshes its LRU position
  }

  /**
   * Records a statement as prepared; returns the least recently used one to Close first when the
   * bound is exceeded, or null.
   */
  public String addPrepared(String name, int bound) {
    prepared.put(name, Boolean.TRUE);
    closeBeforeParse.remove(name);
    if (prepared.size() <= bound) {
      return null;
    }
    String eldest = prepared.keySet().iterator().next();
    prepared.remove(eldest);
    return eldest;
  }

  /** The Parse never happened (skipped after an error, or failed). */
  public void forgetPrepared(String name) {
    prepared.remove(name);
  }

  /** The statement exists but is stale (its plan's result type changed): Close it before reuse. */
  public void invalidatePrepared(String name) {
    prepared.remove(name);
    closeBeforeParse.add(name);
  }

  public boolean takeCloseBeforeParse(String name) {
    return closeBeforeParse.remove(name);
  }

  /** What {@link #unnamed()} holds when the proxy cannot tell what the server's is. */
  public static final Object UNKNOWN_UNNAMED = new Object();

  /**
   * The unnamed statement the server holds: the client's own statement object that last made it,
   * null when there is none, {@link #UNKNOWN_UNNAMED} when nobody knows (a skipped Parse).
   */
  public Object unnamed() {
    return unnamed;
  }

  public void unnamed(Object statement) {
    this.unnamed = statement;
  }

  /** DEALLOCATE ALL or DISCARD ALL ran: nothing is prepared any more. */
  public void forgetAllPrepared() {
    prepared.clear();
    closeBeforeParse.clear();
  }

  /** Exact on the user's loop; from elsewhere (SHOW SERVERS) a recent value. */
  public int preparedCount() {
    return prepared.size();
  }

  @Override
  public String toString() {
    return pool.key() + " pid " + connection.keyData().processId();
  }

  /** Delivers the server's frames to the current user, on the user's loop. */
  private final class Relay extends ChannelInboundHandlerAdapter {
    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      ByteBuf frame = (ByteBuf) msg;
      ServerUser current = user;
      if (current == null) {
        // Nobody asked: a notice, or the server ending the session (FATAL). Not reusable either
        // way.
        byte type = frame.getByte(frame.readerIndex());
        log.debug("{}: unsolicited message '{}' while idle", PooledServer.this, (char) type);
        frame.release();
        if (type == 'E') {
          ctx.close();
        }
        return;
      }
      EventLoop loop = current.loop();
      if (loop.inEventLoop()) {
        current.serverFrame(frame);
        return;
      }
      try {
        loop.execute(() -> current.serverFrame(frame));
      } catch (java.util.concurrent.RejectedExecutionException e) {
        frame.release(); // the client's loop is shutting down: nobody will read this frame
      }
    }

    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) {
      ServerUser current = user;
      if (current != null) {
        EventLoop loop = current.loop();
        if (loop.inEventLoop()) {
          current.serverReadComplete();
        } else {
          loop.execute(current::serverReadComplete);
        }
      }
    }

    @Override
    public void channelWritabilityChanged(ChannelHandlerContext ctx) {
      ServerUser current = user;
      if (current != null) {
        boolean writable = ctx.channel().isWritable();
        current.loop().execute(() -> current.serverWritable(writable));
      }
      ctx.fireChannelWritabilityChanged();
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
      ServerUser current = user;
      if (current != null) {
        current.loop().execute(() -> current.serverClosed(PooledServer.this));
      } else {
        pool.closed(PooledServer.this);
      }
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      log.debug("{}: {}", PooledServer.this, cause.toString());
      ctx.close();
    }
  }
}
