package org.cryoprotect.proxy.frontend;

import io.netty.util.concurrent.Future;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.backend.ServerException;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.pool.ServerPool;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.cryoprotect.proxy.routing.NodeGuard;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A client session's checkout: the node for the unit in its backlog, a server connection borrowed
 * there (the client read on while it waits, up to a bound), the check and the client's settings run
 * on it, and then the client's messages. A failed checkout is the batch's error, as a server error
 * would be; the session survives it.
 *
 * <p>Confined to the client's event loop, like the session whose state it moves.
 */
final class Checkout {
  private static final Logger log = LoggerFactory.getLogger(Checkout.class);

  /**
   * A connection that fails its check before any client message was sent is replaced this often.
   */
  static final int MAX_PREPARE_ATTEMPTS = 3;

  private static final long WAIT_BUFFER_BYTES = 256 * 1024;
  private static final int WAIT_BUFFER_FRAMES = 1024;

  /** How often a read waiting for a replica to catch up while the writer is down looks again. */
  private static final long RYW_RECHECK_MILLIS = 50;

  private final ClientSession s;
  private long acquireStart;
  private long waitingBytes; // received while waiting for a server connection
  private int waitingFrames;

  Checkout(ClientSession session) {
    this.s = session;
  }

  /** Chooses the node for the unit in the backlog and borrows a connection to it. */
  void acquire() {
    if (s.tokenExpired()) {
      return;
    }
    if (s.trail != null && s.trail.refusing()) {
      failed(
          new ServerException(
              SqlState.CONFIGURATION_LIMIT_EXCEEDED,
              "the audit journal is full: statements of audited roles are refused until the"
                  + " audit writer has caught up"));
      return;
    }
    boolean judge = !s.loginPending && s.pins.isEmpty() && s.txStatus == ReadyForQuery.IDLE;
    Endpoint node = s.unit.choose(s.backlog, s.statements.byName(), judge, waitTimeout());
    if (node == null) {
      lookForReplicaSoon();
      return;
    }
    NodeGuard chosen = s.router.guard(node);
    if (chosen.failsFast()) {
      failed(chosen.unavailable(s.unit.onWriter() ? "primary" : "replica"));
      return;
    }
    if (s.unit.isRead()) {
      s.window.open();
    }
    s.moveTo(ClientState.WAITING);
    acquireStart = System.nanoTime();
    ServerPool target = node.equals(s.pool.key().node()) ? s.pool : lender(node);
    Future<PooledServer> borrowed =
        target.acquire(s.loop(), s.serverStartup, s.credentials, s.settings.desired());
    if (borrowed.isDone()) {
      acquired(borrowed); // an idle connection: no need to stop reading (two syscalls saved)
      return;
    }
    waitingBytes = 0; // reading goes on while the client waits, up to a bound
    waitingFrames = 0;
    borrowed.addListener(this::acquired);
  }

  /**
   * A client that sends on while it waits for a server connection is not read from past {@link
   * #WAIT_BUFFER_BYTES} or {@link #WAIT_BUFFER_FRAMES}; below that, reading on costs nothing, while
   * pausing and resuming the socket for every wait costs two system calls.
   */
  void heldWhileWaiting(int bytes) {
    waitingBytes += bytes;
    if ((waitingBytes > WAIT_BUFFER_BYTES || ++waitingFrames > WAIT_BUFFER_FRAMES)
        && s.ctx.channel().config().isAutoRead()) {
      s.ctx.channel().config().setAutoRead(false); // back on once a server is the client's
    }
  }

  /**
   * Read-your-writes while the writer is down ({@link OwnWrites#waitForReplica}): look for a
   * replica again shortly instead of failing the read on the writer.
   */
  private void lookForReplicaSoon() {
    s.moveTo(ClientState.WAITING);
    s.ctx.channel().config().setAutoRead(false);
    s.loop()
        .schedule(
            () -> {
              if (s.state == ClientState.WAITING) {
                s.moveTo(ClientState.IDLE);
                acquire();
              }
            },
            RYW_RECHECK_MILLIS,
            TimeUnit.MILLISECONDS);
  }

  private java.time.Duration waitTimeout() {
    return s.frontend.config().pool().waitTimeout();
  }

  private ServerPool lender(Endpoint node) {
    return s.frontend.pools().pool(s.database, s.pool.key().role(), node);
  }

  private void acquired(Future<? super PooledServer> f) {
    if (!f.isSuccess()) {
      s.moveTo(ClientState.IDLE);
      if (s.state != ClientState.CLOSED && s.unit.fallBackToWriter()) {
        log.debug(
            "client {}: no replica connection ({}), reading from the primary",
            s.client.address(),
            f.cause().getMessage());
        acquire();
        return;
      }
      if (s.unit.isRead()
          && s.state != ClientState.CLOSED
          && s.unit.waitsForReplica(true, waitTimeout())) {
        lookForReplicaSoon();
        s.window.commit(s.ctx, false); // nothing was sent: the next try opens it again
        return; // a read that had to see the client's last write; the writer just went down
      }
      failed(f.cause());
      return;
    }
    PooledServer got = (PooledServer) f.getNow();
    s.frontend
        .metrics()
        .checkout(s.client.database().name(), got.nodeLabel(), System.nanoTime() - acquireStart);
    if (s.state == ClientState.CLOSED) {
      got.pool().release(got);
      return;
    }
    s.server = got;
    s.unit.started(got.node());
    s.moveTo(ClientState.ACTIVE);
    s.server.attach(s);
    s.server.owner(s.client);
    s.client.server(s.server);
    String check = checkoutSql();
    if (check != null) {
      s.preparing = true;
      s.server.testing();
      s.writeOwn(check.equals(";") ? Kind.INJECTED : Kind.APPLY, check);
      s.server.channel().flush();
    } else {
      ready();
    }
  }

  /**
   * What to run before the client's messages: its session parameters when the connection has
   * another client's, or a trivial query when it sat idle long enough to be worth checking.
   */
  private String checkoutSql() {
    if (!s.settings.desired().equals(s.server.applied())) {
      return SessionSettings.applySql(s.settings.desired(), s.server.applied());
    }
    long idleNanos = s.server.idleNanos();
    if (s.loginPending || idleNanos > s.frontend.config().pool().serverCheckDelay().toNanos()) {
      return ";";
    }
    return null;
  }

  private void failed(Throwable cause) {
    s.window.commit(s.ctx, false);
    s.unit.failed();
    if (s.loginPending) {
      ClientErrors.loginFailed(s.client, cause, s.frontend.metrics());
      return;
    }
    if (s.state == ClientState.CLOSED) {
      return;
    }
    // The session survives: the client's batch gets the error, as a server error would.
    ErrorResponse error = ClientErrors.of(cause);
    s.ctx.write(error.encode(s.ctx.alloc()));
    String code = error.sqlState();
    s.frontend.metrics().error(code == null ? "XX" : code.substring(0, 2), "proxy");
    boolean unsynced = LocalAnswers.failBacklog(s.ctx, s.backlog, s.txStatus);
    s.skipUntilSync = unsynced;
    s.ctx.flush();
    s.ctx.channel().config().setAutoRead(true);
  }

  /** The server connection is the client's now: send what waited for it. */
  void ready() {
    s.preparing = false;
    s.prepareAttempts = 0;
    s.server.tested();
    if (s.loginPending) {
      Map<String, String> parameters = new LinkedHashMap<>(s.server.reported());
      if (s.transactionMode) {
        s.pool.welcome(s.settings.welcomeKey(), parameters);
      }
      s.greet(parameters);
    }
    s.ctx.channel().config().setAutoRead(s.ctx.channel().isWritable());
    s.sendBacklog();
  }
}
