package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.EventLoop;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.ScheduledFuture;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.auth.TokenVerifier;
import org.cryoprotect.proxy.backend.ServerCredentials;
import org.cryoprotect.proxy.backend.ServerException;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.pool.ServerPool;
import org.cryoprotect.proxy.pool.ServerUser;
import org.cryoprotect.proxy.pool.SqlScan;
import org.cryoprotect.proxy.pool.SqlScan.Pin;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.ProtocolException;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.DataRow;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.cryoprotect.proxy.protocol.backend.ParameterStatus;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.cryoprotect.proxy.protocol.frontend.Bind;
import org.cryoprotect.proxy.protocol.frontend.FrontendMessageTypes;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.protocol.frontend.Query;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;
import org.cryoprotect.proxy.routing.NodeGuard;
import org.cryoprotect.proxy.routing.Router;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A logged-in client, in session or transaction mode. It borrows a server connection from the pool
 * when the client has something to run, forwards the client's frames, and follows every reply
 * through a queue of what the server still owes: the connection goes back to the pool only at
 * ReadyForQuery 'I' with nothing outstanding, no half-sent extended batch and no pinned state.
 *
 * <p>In transaction mode it also renames prepared statements to proxy-wide names (Parse is sent
 * lazily to each server connection that lacks it, the client's Close is answered locally), moves
 * the client's session parameters with it from server connection to server connection, and pins the
 * client to its server connection for state that cannot move (LISTEN, temporary tables, ...).
 *
 * <p>Collaborators: {@link ReplyQueue} (what the server still owes, and the rules when something
 * fails), {@link StatementRenamer} (prepared statements), {@link SessionSettings} (the client's
 * settings and their capture), {@link UnitRoute} (where a unit runs, replays, read-your-writes),
 * {@link LocalAnswers} (replies without a server), {@link SessionStats} (bytes and durations),
 * {@link ClientErrors} (failures as the client is told them), {@link ClientView} (what other
 * threads see).
 *
 * <p>Confined to the client's event loop: the pool delivers server frames here too.
 */
final class ClientSession extends ChannelInboundHandlerAdapter
    implements ServerUser, StatementRenamer.Link {
  private static final Logger log = LoggerFactory.getLogger(ClientSession.class);

  private static final int MAX_PREPARE_ATTEMPTS = 3;

  private static final long WAIT_BUFFER_BYTES = 256 * 1024;
  private static final int WAIT_BUFFER_FRAMES = 1024;

  /** How often a read waiting for a replica to catch up while the writer is down looks again. */
  private static final long RYW_RECHECK_MILLIS = 50;

  private static final String LSN_SQL = "SELECT pg_current_wal_insert_lsn()::text";

  private final ClientConnection client;
  private final Frontend frontend;
  private final ServerPool pool; // the primary's: client bookkeeping and greetings
  private final Database database;
  private final Router router;
  private final boolean transactionMode;
  private final StartupMessage serverStartup;
  private final ServerCredentials credentials;
  private final SessionSettings settings;
  private final StatementRenamer statements;
  private final Pins pins;

  private final ArrayDeque<ByteBuf> backlog = new ArrayDeque<>();
  private final ReplyQueue pending = new ReplyQueue();
  private ChannelHandlerContext ctx;
  private PooledServer server;
  private boolean acquiring;
  private boolean preparing; // proxy-only messages in flight before the client's are sent
  private int prepareAttempts;
  private boolean loginPending = true;
  private boolean midBatch; // extended-protocol messages sent since the last Sync
  private boolean copyIn;
  private boolean resetNeeded; // DISCARD ALL before the connection returns to the pool
  private boolean skipUntilSync; // the pool failed this batch: drop frames up to its Sync
  private boolean closing; // the client is gone: drain, clean up, return the connection
  private boolean applyRefused; // the server refused the client's settings: it is being closed
  private byte txStatus = ReadyForQuery.IDLE;
  // Transaction control sent since the last ReadyForQuery (SqlScan bits): what a lost server
  // connection means depends on them (a BEGIN not yet answered, a COMMIT in flight).
  private int controlSent;
  private ErrorResponse lossError; // the server's FATAL that is ending the connection, if any
  private FailedTransaction failed; // the transaction died with its server connection
  private ScheduledFuture<?> drainDeadline;
  private SessionClock clock; // limits.*_timeout; from handlerAdded on
  private long acquireStart;

  // Routing (DESIGN §5) and replay (DESIGN §4).
  private final UnitRoute unit; // where the current unit runs, replays, read-your-writes
  private final ReplayWindow window = new ReplayWindow();
  private boolean errorSent; // an ErrorResponse reached the client since the last ReadyForQuery
  private long waitingBytes; // received while waiting for a server connection
  private int waitingFrames;
  private final ClientView view; // what SHOW CLIENTS and the pool's statistics see
  private final SessionStats stats;
  private final AuditTrail trail; // null unless the login role is audited
  private final CachedReads reads; // null unless the result cache may answer this client

  ClientSession(
      ClientConnection client,
      Frontend frontend,
      ServerPool pool,
      boolean transactionMode,
      StartupMessage serverStartup,
      ServerCredentials credentials) {
    this.client = client;
    this.frontend = frontend;
    this.pool = pool;
    this.database = client.database();
    this.router = frontend.pools().router();
    this.transactionMode = transactionMode;
    this.unit = new UnitRoute(router, database, transactionMode);
    this.serverStartup = serverStartup;
    this.credentials = credentials;
    this.settings = new SessionSettings(client.startup());
    this.pins = new Pins(frontend.metrics());
    this.statements =
        new StatementRenamer(
            transactionMode,
            frontend.pools().prepared(database.name(), pool.key().role()),
            () -> frontend.config().pool().preparedPerServer(),
            frontend.metrics(),
            this::statementContext);
    this.stats = new SessionStats(pool, frontend.metrics(), database.name());
    this.trail =
        frontend.audit().audits(client.loginRole())
            ? new AuditTrail(frontend.audit(), client)
            : null;
    this.reads =
        transactionMode && trail == null && frontend.cache().enabled()
            ? new CachedReads(
                frontend.cache(),
                database.name(),
                pool.key().role(),
                settings::desired,
                statements,
                frontend.metrics())
            : null;
    this.view =
        new ClientView(
            client,
            () -> settings.desired().getOrDefault("application_name", ""),
            () -> statements.byName().size());
  }

  /** What fixes a prepared text's meaning besides the text: the search_path and the role. */
  private String statementContext() {
    Map<String, String> now = settings.desired();
    return now.getOrDefault("search_path", "") + '\0' + now.getOrDefault("role", "");
  }

  // ---------------------------------------------------------------- login

  @Override
  public void handlerAdded(ChannelHandlerContext ctx) {
    this.ctx = ctx;
    this.clock = new SessionClock(() -> frontend.config().limits(), ctx.executor(), clockView());
    TokenVerifier.Verified token = client.token();
    if (token != null) {
      // An idle session ends when its token does; a busy one at its next transaction boundary.
      long millis = Math.max(0, token.expiresAt().toEpochMilli() - System.currentTimeMillis());
      ctx.executor()
          .schedule(
              () -> {
                if (server == null && !closing) {
                  tokenExpired();
                }
              },
              millis + 1,
              TimeUnit.MILLISECONDS);
    }
    Map<String, String> welcome = transactionMode ? pool.welcome(settings.welcomeKey()) : null;
    if (welcome != null) {
      greet(welcome);
    } else {
      acquire();
    }
  }

  private void greet(Map<String, String> parameters) {
    loginPending = false;
    clock.start();
    pool.joined(view);
    frontend.metrics().clientLogin(client.database().name(), client.user());
    client.welcome(ctx, parameters, frontend.loggedIn());
  }

  /** What the session timeouts ({@link SessionClock}) see of this session and may do to it. */
  private SessionClock.Session clockView() {
    return new SessionClock.Session() {
      @Override
      public boolean over() {
        return closing || !ctx.channel().isActive();
      }

      @Override
      public boolean busy() {
        return !pending.isEmpty() || acquiring || preparing || !backlog.isEmpty();
      }

      @Override
      public boolean inTransaction() {
        return server != null && txStatus != ReadyForQuery.IDLE;
      }

      @Override
      public long oldestRequestNanos() {
        Pending oldest = pending.peek();
        return server == null || copyIn || oldest == null ? 0 : oldest.sentNanos;
      }

      @Override
      public void cancelRequest() {
        log.info("client {}: query_timeout, cancelling its query on {}", client.address(), server);
        CancelRegistry.cancel(server, client, loop(), frontend.connector());
      }

      @Override
      public void end(SqlState state, String message) {
        client.fatal(state, message);
      }
    };
  }

  // ---------------------------------------------------------------- client side

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
    clock.active();
    ByteBuf frame = (ByteBuf) msg;
    byte type = Frames.type(frame);
    if (!FrontendMessageTypes.isKnown(type) || type == FrontendMessageTypes.PASSWORD) {
      frame.release();
      client.fatal(SqlState.PROTOCOL_VIOLATION, "invalid frontend message type " + describe(type));
      return;
    }
    if (type == FrontendMessageTypes.TERMINATE) {
      frame.release();
      client.closeReason("client terminated");
      ctx.close();
      return;
    }
    if (skipUntilSync) {
      frame.release();
      if (type == FrontendMessageTypes.SYNC) {
        skipUntilSync = false;
        ctx.writeAndFlush(new ReadyForQuery(txStatus).encode(ctx.alloc()));
      }
      return;
    }
    if (failed != null && server == null && !acquiring && backlog.isEmpty()) {
      answerFailed(frame);
      return;
    }
    if (server == null && !acquiring && answeredWithoutServer(frame)) {
      return;
    }
    if (server == null || preparing || window.isSealed() || !backlog.isEmpty()) {
      backlog.add(frame); // a server is borrowed at the end of the read, for the whole unit
      if (acquiring) {
        heldWhileWaiting(frame.readableBytes());
      }
      return;
    }
    sendOrRefuse(frame);
  }

  /**
   * With no server connection and nothing outstanding, some messages need no server: Parse of a
   * statement a server already accepted, Close of a statement, Sync and Flush. pgbench and pgJDBC
   * prepare and close statements in separate round trips; answering those here keeps a client from
   * borrowing (or waiting for) a server connection just to hear "ok".
   */
  private boolean answeredWithoutServer(ByteBuf frame) {
    if (!transactionMode || !backlog.isEmpty()) {
      return false;
    }
    try {
      return answerWithoutServer(frame);
    } catch (ProtocolException e) {
      return false; // refused on the normal path
    }
  }

  private boolean answerWithoutServer(ByteBuf frame) {
    return LocalAnswers.withoutServer(ctx, frame, statements, txStatus);
  }

  /**
   * The client's transaction failed with its server connection: the proxy answers as PostgreSQL.
   */
  private void answerFailed(ByteBuf frame) {
    try {
      if (failed.answer(ctx, frame, statements)) {
        failed = null;
        txStatus = ReadyForQuery.IDLE;
      }
    } catch (ProtocolException e) {
      client.fatal(SqlState.PROTOCOL_VIOLATION, "malformed message: " + e.getMessage());
    }
  }

  /** A body the proxy must read but cannot is a protocol violation, as the server would say. */
  private void sendOrRefuse(ByteBuf frame) {
    try {
      send(frame);
    } catch (ProtocolException e) {
      if (frame.refCnt() > 0) {
        frame.release();
      }
      client.fatal(SqlState.PROTOCOL_VIOLATION, "malformed message: " + e.getMessage());
    }
  }

  @Override
  public void channelReadComplete(ChannelHandlerContext ctx) {
    if (server != null) {
      server.channel().flush();
    } else {
      ctx.flush(); // answers given without a server
      if (!acquiring && !closing && !backlog.isEmpty()) {
        lookUpOrAcquire(true);
      }
    }
  }

  /**
   * The unit in the backlog: answered from the result cache when it can be, else run on a server
   * connection once the backlog says where. {@code mayLead}: false after waiting for another
   * client's identical miss.
   */
  private void lookUpOrAcquire(boolean mayLead) {
    if (reads != null) {
      if (reads.waiting()) {
        return;
      }
      if (txStatus == ReadyForQuery.IDLE
          && failed == null
          && pins.isEmpty()
          && !loginPending
          && !tokenExpired()) {
        switch (reads.tryAnswer(ctx, backlog, this::cacheWaitOver, mayLead)) {
          case ANSWERED -> {
            clock.active();
            ctx.flush();
            return;
          }
          case WAITING -> {
            return;
          }
          case PROCEED -> {}
        }
      }
    }
    if (!closing && unit.canChoose(backlog)) {
      acquire();
    }
  }

  /** Another client's identical miss landed (or the wait ran out): look again, then run it. */
  private void cacheWaitOver() {
    if (!closing && server == null && !acquiring && !backlog.isEmpty()) {
      lookUpOrAcquire(false);
    }
  }

  @Override
  public void channelWritabilityChanged(ChannelHandlerContext ctx) {
    if (server != null) {
      server.channel().config().setAutoRead(ctx.channel().isWritable());
    }
    ctx.fireChannelWritabilityChanged();
  }

  @Override
  public void channelInactive(ChannelHandlerContext ctx) {
    closing = true;
    if (trail != null) {
      trail.discard();
    }
    pool.left(view);
    if (!loginPending) {
      frontend.metrics().clientClosed(client.database().name(), client.user());
    }
    releaseBacklog();
    window.commit(ctx, false);
    if (reads != null) {
      reads.abandon();
    }
    if (server != null) {
      if (pending.owesClient()) {
        // Its query may run for long: stop it now rather than hold the connection until it ends.
        CancelRegistry.cancel(server, client, loop(), frontend.connector());
      }
      client.server(null);
      // Backpressure from this client no longer applies: drain the server at full speed.
      server.channel().config().setAutoRead(true);
      if (copyIn) {
        write(Query.copyFail(ctx.alloc(), "client disconnected"));
        copyIn = false;
      }
      if (midBatch) {
        write(Query.empty(ctx.alloc(), 'S'));
        pending.add(Kind.SYNC, false);
        midBatch = false;
      }
      server.channel().flush();
      drainDeadline =
          loop()
              .schedule(
                  () -> {
                    if (server != null) {
                      log.info("{}: server connection did not settle after client left", server);
                      server.pool().discard(server);
                      server = null;
                      leftNode();
                    }
                  },
                  10,
                  TimeUnit.SECONDS);
      if (pending.isEmpty()) {
        readyPoint();
      }
    }
    ctx.fireChannelInactive();
  }

  @Override
  public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
    ClientErrors.handle(client, cause);
  }

  private void releaseBacklog() {
    ByteBuf frame;
    while ((frame = backlog.poll()) != null) {
      frame.release();
    }
  }

  /** One client frame to the linked server, rewritten where prepared statements need it. */
  private void send(ByteBuf frame) {
    byte type = Frames.type(frame);
    if (window.isOpen() && !window.request(frame)) {
      commitWindow(); // too big to replay: it streams
    }
    stats.received(frame.readableBytes());
    unit.sent(type);
    switch (type) {
      case 'Q' -> {
        if (reads != null) {
          reads.sentQuery(frame);
        }
        if (SqlScan.isPlainQuery(frame)) {
          int from = frame.readerIndex() + Frames.HEADER;
          noteControl(SqlScan.transactionControl(frame, from, frame.writerIndex() - 1));
        } else {
          String sql = Query.textOrNull(frame); // malformed: the server answers for itself
          if (sql != null) {
            noteEffects(SqlScan.scan(sql));
            noteControl(SqlScan.transactionControl(sql));
          }
        }
        if (transactionMode) {
          statements.queried(server); // a simple Query drops the unnamed statement
        }
        if (midBatch) {
          // A Query between an Execute and its Sync: once the Sync comes, a PostgreSQL 17+ backend
          // is left in an implicit block with no transaction command, and fails its next statement
          // (XX000 "StartTransactionCommand: unexpected state STARTED"). Closed after this client.
          server.markBroken();
        }
        Pending query = pending.add(Kind.QUERY, true);
        if (trail != null) {
          audited(query, trail.query(frame), null);
        }
        write(frame);
      }
      case 'P' -> {
        midBatch = true;
        if (trail != null) {
          trail.parsed(frame);
        }
        statements.parse(frame, this);
      }
      case 'B' -> {
        midBatch = true;
        if (trail != null) {
          trail.bound(frame);
        }
        if (reads != null) {
          Parse made = statements.statement(Bind.statement(frame));
          reads.sent(made == null ? null : made.query());
        }
        statements.bind(frame, this);
      }
      case 'D' -> {
        midBatch = true;
        statements.describe(frame, this);
      }
      case 'E' -> extended(frame, Kind.EXECUTE);
      case 'C' -> {
        midBatch = true;
        statements.close(frame, this);
      }
      case 'S' -> {
        midBatch = false;
        pending.add(Kind.SYNC, true);
        write(frame);
      }
      case 'F' -> {
        pending.add(Kind.FUNCTION, true);
        write(frame);
      }
      case 'c', 'f' -> {
        copyIn = false;
        write(frame);
      }
      default -> write(frame); // Flush, CopyData
    }
  }

  private void extended(ByteBuf frame, Kind kind) {
    midBatch = true;
    Pending execute = pending.add(kind, true);
    if (trail != null && kind == Kind.EXECUTE) {
      AuditTrail.Portal portal = trail.executed(frame);
      audited(execute, portal.sql(), portal.parameters());
    }
    write(frame);
  }

  private static void audited(Pending p, String sql, String parameters) {
    p.sql = sql;
    p.parameters = parameters;
    p.sentNanos = System.nanoTime();
  }

  /** An audit record is on disk (null), or could not be journaled. */
  private void auditDurable(Throwable error) {
    boolean clear = trail.settled();
    if (closing) {
      trail.discard();
      return;
    }
    if (error != null) {
      // The statement ran but has no record: the client must not hear it completed. Ending the
      // session also ends (rolls back) a transaction it had open.
      trail.discard();
      client.fatal(
          SqlState.CONFIGURATION_LIMIT_EXCEEDED,
          "the audit journal cannot take this statement's record: " + error.getMessage());
      return;
    }
    if (clear) {
      trail.release(this::reply);
      ctx.flush();
    }
  }

  // ---------------------------------------------------------------- StatementRenamer.Link

  @Override
  public PooledServer server() {
    return server;
  }

  @Override
  public ByteBufAllocator alloc() {
    return ctx.alloc();
  }

  @Override
  public void expect(Pending reply) {
    pending.add(reply);
  }

  @Override
  public void local(Kind kind) {
    pending.add(kind, true);
    answerLocally();
  }

  @Override
  public void noteEffects(SqlScan.Effects effects) {
    if (effects.isNone()) {
      return;
    }
    if (effects.changesSession()) {
      settings.mayHaveChanged();
    }
    Set<Pin> added = pins.noted(effects.pins(), effects.releases());
    if (!added.isEmpty()) {
      log.debug("client {} pinned to {} for {}", client.address(), server, added);
    }
  }

  @Override
  public void noteControl(int bits) {
    controlSent |= bits;
  }

  @Override
  public void write(ByteBuf frame) {
    server.channel().write(frame, server.channel().voidPromise());
  }

  /** One of the proxy's own simple queries; like any Query it drops the unnamed statement. */
  private void writeOwn(Kind kind, String sql) {
    pending.add(kind, false);
    server.unnamed(null);
    write(Query.encode(ctx.alloc(), sql));
  }

  // ---------------------------------------------------------------- acquiring and preparing

  /** A JWT login whose token has expired ends with 28000, as PostgreSQL ends a login it refuses. */
  /** A JWT session whose token expired or was revoked ends (28000) before its next transaction. */
  private boolean tokenExpired() {
    TokenVerifier.Verified token = client.token();
    if (token == null) {
      return false;
    }
    String why =
        !Instant.now().isBefore(token.expiresAt())
            ? "token expired"
            : frontend.secrets().tokens().revoked(token) ? "token revoked" : null;
    if (why == null) {
      return false;
    }
    client.fatal(SqlState.INVALID_AUTHORIZATION_SPECIFICATION, why);
    return true;
  }

  /** Chooses the node for the unit in the backlog and borrows a connection to it. */
  private void acquire() {
    if (tokenExpired()) {
      return;
    }
    if (trail != null && trail.refusing()) {
      acquireFailed(
          new ServerException(
              SqlState.CONFIGURATION_LIMIT_EXCEEDED,
              "the audit journal is full: statements of audited roles are refused until the"
                  + " audit writer has caught up"));
      return;
    }
    boolean judge = !loginPending && pins.isEmpty() && txStatus == ReadyForQuery.IDLE;
    Endpoint node = unit.choose(backlog, statements.byName(), judge, waitTimeout());
    if (node == null) {
      lookForReplicaSoon();
      return;
    }
    NodeGuard chosen = router.guard(node);
    if (chosen.failsFast()) {
      acquireFailed(chosen.unavailable(unit.onWriter() ? "primary" : "replica"));
      return;
    }
    if (unit.isRead()) {
      window.open();
    }
    acquiring = true;
    view.state("waiting", 0);
    acquireStart = System.nanoTime();
    ServerPool target = node.equals(pool.key().node()) ? pool : lender(node);
    Future<PooledServer> borrowed =
        target.acquire(loop(), serverStartup, credentials, settings.desired());
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
  private void heldWhileWaiting(int bytes) {
    waitingBytes += bytes;
    if ((waitingBytes > WAIT_BUFFER_BYTES || ++waitingFrames > WAIT_BUFFER_FRAMES)
        && ctx.channel().config().isAutoRead()) {
      ctx.channel().config().setAutoRead(false); // back on once a server is the client's
    }
  }

  /**
   * Read-your-writes while the writer is down ({@link OwnWrites#waitForReplica}): look for a
   * replica again shortly instead of failing the read on the writer.
   */
  private void lookForReplicaSoon() {
    acquiring = true;
    view.state("waiting", 0);
    ctx.channel().config().setAutoRead(false);
    loop()
        .schedule(
            () -> {
              acquiring = false;
              if (!closing && server == null) {
                acquire();
              }
            },
            RYW_RECHECK_MILLIS,
            TimeUnit.MILLISECONDS);
  }

  private java.time.Duration waitTimeout() {
    return frontend.config().pool().waitTimeout();
  }

  private ServerPool lender(Endpoint node) {
    return frontend.pools().pool(database, pool.key().role(), node);
  }

  private void acquired(Future<? super PooledServer> f) {
    acquiring = false;
    if (!f.isSuccess()) {
      view.state("idle", 0);
      if (!closing && unit.fallBackToWriter()) {
        log.debug(
            "client {}: no replica connection ({}), reading from the primary",
            client.address(),
            f.cause().getMessage());
        acquire();
        return;
      }
      if (unit.isRead() && !closing && unit.waitsForReplica(true, waitTimeout())) {
        lookForReplicaSoon();
        window.commit(ctx, false); // nothing was sent: the next try opens it again
        return; // a read that had to see the client's last write; the writer just went down
      }
      acquireFailed(f.cause());
      return;
    }
    PooledServer s = (PooledServer) f.getNow();
    frontend
        .metrics()
        .checkout(client.database().name(), s.nodeLabel(), System.nanoTime() - acquireStart);
    if (closing) {
      s.pool().release(s);
      return;
    }
    server = s;
    unit.started(s.node());
    view.state("active", s.connection().keyData().processId());
    server.attach(this);
    server.owner(client);
    client.server(server);
    String check = checkoutSql();
    if (check != null) {
      preparing = true;
      writeOwn(check.equals(";") ? Kind.INJECTED : Kind.APPLY, check);
      server.channel().flush();
    } else {
      ready();
    }
  }

  /**
   * What to run before the client's messages: its session parameters when the connection has
   * another client's, or a trivial query when it sat idle long enough to be worth checking.
   */
  private String checkoutSql() {
    if (!settings.desired().equals(server.applied())) {
      return SessionSettings.applySql(settings.desired(), server.applied());
    }
    long idleNanos = server.idleNanos();
    if (loginPending || idleNanos > frontend.config().pool().serverCheckDelay().toNanos()) {
      return ";";
    }
    return null;
  }

  private void acquireFailed(Throwable cause) {
    window.commit(ctx, false);
    unit.failed();
    if (loginPending) {
      ClientErrors.loginFailed(client, cause, frontend.metrics());
      return;
    }
    if (closing) {
      return;
    }
    // The session survives: the client's batch gets the error, as a server error would.
    ErrorResponse error = ClientErrors.of(cause);
    ctx.write(error.encode(ctx.alloc()));
    String code = error.sqlState();
    frontend.metrics().error(code == null ? "XX" : code.substring(0, 2), "proxy");
    boolean unsynced = LocalAnswers.failBacklog(ctx, backlog, txStatus);
    skipUntilSync = unsynced;
    ctx.flush();
    ctx.channel().config().setAutoRead(true);
  }

  /** The server connection is the client's now: send what waited for it. */
  private void ready() {
    preparing = false;
    prepareAttempts = 0;
    if (loginPending) {
      Map<String, String> parameters = new LinkedHashMap<>(server.reported());
      if (transactionMode) {
        pool.welcome(settings.welcomeKey(), parameters);
      }
      greet(parameters);
    }
    ctx.channel().config().setAutoRead(ctx.channel().isWritable());
    sendBacklog();
  }

  /** Sends what waited, up to the end of a unit that may still be replayed. */
  private void sendBacklog() {
    ByteBuf frame;
    while (server != null && !preparing && !window.isSealed() && (frame = backlog.poll()) != null) {
      sendOrRefuse(frame);
    }
    if (server != null) {
      server.channel().flush();
      if (pending.isEmpty()) {
        readyPoint();
      }
    }
  }

  // ---------------------------------------------------------------- server side

  @Override
  public EventLoop loop() {
    return ctx.channel().eventLoop();
  }

  @Override
  public void serverFrame(ByteBuf frame) {
    if (server == null) {
      frame.release(); // the connection was discarded meanwhile
      return;
    }
    byte type = Frames.type(frame);
    Pending head = pending.peek();
    switch (type) {
      case 'S' -> {
        ParameterStatus status = ParameterStatus.decode(Frames.body(frame));
        server.reported().put(status.name(), status.value());
        if (head != null && head.toClient && transactionMode) {
          settings.mayHaveChanged(); // a reported setting changed, maybe in a function
        }
        toClient(frame, head == null || head.toClient);
        return;
      }
      case 'N' -> {
        toClient(frame, head == null || head.toClient);
        return;
      }
      case 'A' -> {
        toClient(frame, true);
        return;
      }
      default -> {}
    }
    if (head == null) {
      if (type == 'E' && transactionMode && endsConnection(frame)) {
        return; // unsolicited: the backend ended while the client held it (idle in transaction)
      }
      log.debug("{}: reply '{}' nobody waited for", server, (char) type);
      toClient(frame, true);
      return;
    }
    if (trail != null && head.toClient && (type == 'C' || type == 'E')) {
      // An error of a Parse, Bind or Describe stops the Execute after it: that statement's record.
      Pending statement = head.sql != null || type != 'E' ? head : pending.executeBeforeSync();
      if (statement != null && statement.sql != null) {
        trail.completed(statement, frame, loop()::execute, this::auditDurable);
      }
    }
    if (type == 'E') {
      serverError(frame, head);
    } else {
      if (head.kind == Kind.SNAPSHOT && type == 'D') {
        settings.captured(DataRow.texts(Frames.body(frame)));
      } else if (head.kind == Kind.LSN && type == 'D') {
        unit.wrote(DataRow.texts(Frames.body(frame)).get(0));
      } else if (type == 'G') {
        copyIn = true;
        if (closing) {
          write(Query.copyFail(ctx.alloc(), "client disconnected")); // nobody sends the data
          server.channel().flush();
          copyIn = false;
        }
      } else if (type == 'C' && head.toClient) {
        commandComplete(frame);
      } else if (type == 'Z') {
        txStatus = ReadyForQuery.status(frame);
        if (head.toClient) {
          errorSent = false;
          controlSent = 0;
          if (reads != null) {
            reads.ready(txStatus); // writes invalidate before the client hears they are done
          }
        }
      }
      toClient(frame, head.toClient);
      if (head.kind.isLast(type)) {
        pending.poll();
        finished(head);
      }
    }
    answerLocally();
    if (type == 'Z' && pending.isEmpty() && server != null) {
      readyPoint();
    }
  }

  private void toClient(ByteBuf frame, boolean wanted) {
    if (wanted && !closing) {
      stats.sent(frame.readableBytes());
      reply(frame);
    } else {
      frame.release();
    }
  }

  /**
   * To the client; held back while the unit may still be replayed, or while an audit record of a
   * statement before it is not yet on disk.
   */
  private void reply(ByteBuf frame) {
    if (reads != null) {
      reads.toClient(frame);
    }
    if (trail != null && trail.holds()) {
      trail.hold(frame);
      return;
    }
    if (window.isOpen()) {
      if (window.hold(frame)) {
        return;
      }
      commitWindow();
      if (!backlog.isEmpty() && server != null) {
        loop().execute(this::sendBacklog); // what waited for the unit's end may go now
      }
    }
    ctx.write(frame, ctx.voidPromise());
  }

  /** The unit will not be replayed: what was held goes to the client. */
  private void commitWindow() {
    window.commit(ctx, true);
  }

  /** Replies the proxy owes, sent once everything before them has arrived. */
  private void answerLocally() {
    Kind local;
    while ((local = pending.pollLocal()) != null) {
      if (!closing) {
        reply(Query.empty(ctx.alloc(), local == Kind.LOCAL_PARSE_COMPLETE ? '1' : '3'));
      }
    }
  }

  private void finished(Pending done) {
    if (done.toClient
        && (done.kind == Kind.QUERY || done.kind == Kind.SYNC || done.kind == Kind.FUNCTION)) {
      long now = System.nanoTime();
      unit.served(now);
      stats.answered(now, txStatus == ReadyForQuery.IDLE, unit.route());
    }
    if (done.kind == Kind.PARSE && done.entry != null) {
      done.entry.verified(true);
    } else if (done.kind == Kind.APPLY && !applyRefused) {
      server.applied(settings.desired());
    } else if (done.kind == Kind.SNAPSHOT) {
      server.applied(settings.captureDone());
      Set<Pin> added = pins.probed(settings.capturedPins());
      if (!added.isEmpty()) {
        log.debug(
            "client {} pinned to {} for {} (seen by the probe)", client.address(), server, added);
      }
    }
  }

  /**
   * DISCARD ALL and DEALLOCATE ALL remove every prepared statement on the server, the proxy's
   * included; the client's own are gone too, as it expects.
   */
  private void commandComplete(ByteBuf frame) {
    if (frame.getByte(frame.readerIndex() + Frames.HEADER) != 'D') {
      return;
    }
    String tag = Frames.readCString(Frames.body(frame));
    if (tag.equals("DISCARD ALL") || tag.equals("DEALLOCATE ALL")) {
      server.forgetAllPrepared();
      statements.byName().clear();
      pins.remove(Pin.PREPARE);
      if (tag.equals("DISCARD ALL")) {
        pins.clear();
        server.applied(Map.of());
        if (transactionMode) {
          settings.mayHaveChanged();
        }
      }
    }
  }

  /**
   * An ErrorResponse ends the failing message; in the extended protocol the server then skips
   * everything up to Sync, so what the proxy queued for those messages is dropped as well.
   */
  private void serverError(ByteBuf frame, Pending head) {
    if (head.kind == Kind.LSN) {
      frame.release();
      unit.positionUnknown();
      return;
    }
    if (head.kind == Kind.INJECTED || head.kind == Kind.APPLY || head.kind == Kind.SNAPSHOT) {
      ErrorResponse error = ErrorResponse.decode('E', Frames.body(frame));
      frame.release();
      if (head.kind == Kind.APPLY
          && Severity.ERROR.name().equals(error.severity())
          && refusesSettings(error.sqlState())) {
        // The server refused one of the client's own settings (a bad startup option, a role it
        // may not take): the client's fault, answered as PostgreSQL answers it at login. The
        // connection is sound and its settings unchanged (the apply is one implicit transaction).
        applyRefused = true;
        closing = true;
        client.sendAndClose(error.withSeverity(Severity.FATAL).encode(ctx.alloc()));
        return;
      }
      if (preparing && !closing && prepareAttempts + 1 < MAX_PREPARE_ATTEMPTS) {
        // Nothing of the client's reached this connection yet (it died, or was terminated,
        // while idle): drop it and borrow another.
        log.info("{}: check before use failed ({}), trying another", server, error.message());
        server.markBroken();
        serverClosed(server);
        return;
      }
      log.warn("{}: the proxy's own query failed: {}", server, error);
      server.markBroken();
      if (!closing) {
        client.fatal(
            SqlState.CONNECTION_FAILURE,
            "could not restore session state on server connection: " + error.message());
      }
      return;
    }
    boolean extended =
        head.kind != Kind.QUERY && head.kind != Kind.FUNCTION && head.kind != Kind.SYNC;
    String sqlState = ErrorResponse.sqlState(frame);
    // A replica's 25006 to a unit misjudged as a read: it runs again on the primary at its end.
    boolean misjudged = window.isOpen() && unit.misjudged(sqlState);
    if (!misjudged && sqlState != null && sqlState.length() == 5) {
      frontend.metrics().error(sqlState.substring(0, 2), "server");
    }
    if (transactionMode && endsConnection(frame)) {
      return;
    }
    if (head.kind == Kind.PARSE && head.duplicateOf != null) {
      frame = ClientErrors.duplicateStatement(frame, head.duplicateOf, ctx.alloc());
    }
    errorSent = true;
    if (head.kind == Kind.BIND && head.statement != null && ClientErrors.isStalePlan(frame)) {
      server.invalidatePrepared(head.statement);
    }
    toClient(frame, true);
    if (!extended) {
      return;
    }
    pending.skipToSync(server, statements);
  }

  /**
   * Whether an error to the proxy's SET of the client's settings is about those settings: an
   * invalid value (22), an unknown parameter or a role it may not take (42), a parameter that
   * cannot change now (55P02), an unsupported value (0A). Any other error (XX000 from a backend in
   * a state PostgreSQL itself mishandles, say) is the server connection's, not the client's.
   */
  private static boolean refusesSettings(String sqlState) {
    return sqlState != null
        && (sqlState.startsWith("22")
            || sqlState.startsWith("42")
            || sqlState.startsWith("0A")
            || sqlState.equals("55P02"));
  }

  /**
   * A FATAL from the server (terminated, shutting down) ends that server connection, not the
   * client's session: what the client is told waits until the connection is gone, for what it means
   * depends on what was in flight ({@link #failUnit}). Consumes {@code frame} when true.
   */
  private boolean endsConnection(ByteBuf frame) {
    ErrorResponse fatal = ClientErrors.fatal(frame);
    if (fatal == null) {
      return false;
    }
    frame.release();
    lossError = fatal.withSeverity(Severity.ERROR);
    server.markBroken();
    server.channel().close();
    return true;
  }

  /** Nothing is outstanding and the server said ReadyForQuery: what next for the connection? */
  private void readyPoint() {
    clock.active(); // idle from its last answer on
    if (closing) {
      cleanUpAfterClient();
      return;
    }
    if (preparing) {
      ready();
      return;
    }
    if (window.isOpen()) {
      if (txStatus == ReadyForQuery.IDLE && unit.rerouteToWriter()) {
        releaseServer();
        replay(ProxyMetrics.REPLAY_READ_ONLY);
        return;
      }
      commitWindow();
    }
    ctx.flush();
    unit.ended();
    if (txStatus != ReadyForQuery.IDLE || midBatch || copyIn) {
      if (!backlog.isEmpty()) {
        sendBacklog(); // the rest of a read-only transaction, on the same server
      }
      return;
    }
    if (transactionMode && (settings.captureNeeded() || unit.lsnNeeded())) {
      if (settings.captureNeeded()) {
        settings.captureStarted();
        pins.probeSent();
        writeOwn(Kind.SNAPSHOT, SessionSettings.SNAPSHOT_SQL);
      }
      if (unit.takeLsnNeeded()) {
        // After the client's commit, off its path: its ReadyForQuery is already on the way.
        writeOwn(Kind.LSN, LSN_SQL);
      }
      server.channel().flush();
      return;
    }
    if (transactionMode && pins.isEmpty()) {
      releaseServer();
      if (!backlog.isEmpty() && unit.canChoose(backlog)) {
        acquire(); // the next unit, routed afresh (or when the rest of it arrives)
      }
    } else if (!backlog.isEmpty()) {
      sendBacklog();
    }
  }

  /**
   * Runs the unit again from the client's own messages (DESIGN §4): nothing of its reply reached
   * the client, and it reads only, so running it twice cannot change anything.
   */
  private void replay(String reason) {
    Endpoint avoided = unit.replayed();
    frontend.metrics().replay(reason);
    log.debug("client {}: replaying a read ({}), avoiding {}", client.address(), reason, avoided);
    window.rewind(backlog);
    pending.clear();
    midBatch = false;
    copyIn = false;
    errorSent = false;
    controlSent = 0;
    txStatus = ReadyForQuery.IDLE;
    acquire();
  }

  /** The client left: roll back, reset what cannot be kept, and give the connection back. */
  private void cleanUpAfterClient() {
    if (settings.abandon()) {
      server.applied(null); // changed settings never captured: applied afresh before reuse
    }
    if (txStatus != ReadyForQuery.IDLE) {
      inject("ROLLBACK");
      return;
    }
    if (!resetNeeded && (!transactionMode || !pins.isEmpty())) {
      resetNeeded = true;
      pins.clear();
      inject("DISCARD ALL");
      server.forgetAllPrepared();
      server.applied(Map.of());
      return;
    }
    releaseServer();
  }

  private void inject(String sql) {
    writeOwn(Kind.INJECTED, sql);
    server.channel().flush();
  }

  private void releaseServer() {
    if (drainDeadline != null) {
      drainDeadline.cancel(false);
      drainDeadline = null;
    }
    PooledServer s = server;
    server = null;
    leftNode();
    view.state("idle", 0);
    client.server(null);
    resetNeeded = false;
    s.pool().release(s);
    if (!closing) {
      ctx.channel().config().setAutoRead(true); // the server may have paused it (backpressure)
    }
  }

  @Override
  public void serverReadComplete() {
    if (!closing) {
      ctx.flush();
    }
  }

  /** The server connection is no longer the client's: the node has one transaction less. */
  private void leftNode() {
    unit.left();
  }

  @Override
  public void serverClosed(PooledServer lost) {
    if (lost != server) {
      return; // one this session already gave back (or never got)
    }
    if (reads != null) {
      reads.lost();
    }
    server = null;
    leftNode();
    view.state("idle", 0);
    client.server(null);
    lost.pool().discard(lost);
    router.lost(lost.node());
    if (closing) {
      pending.clear();
      lossError = null;
      return;
    }
    ctx.channel().config().setAutoRead(true);
    if (preparing && ++prepareAttempts < MAX_PREPARE_ATTEMPTS) {
      lossError = null;
      // Nothing of the client's was sent yet: another connection will do.
      pending.clear();
      preparing = false;
      acquire();
      return;
    }
    if (!transactionMode) {
      pending.clear();
      lossError = null;
      client.fatal(
          SqlState.CONNECTION_FAILURE, "server connection to " + lost.node() + " was lost");
      return;
    }
    if (window.isOpen() && unit.replayAvoiding(lost.node())) {
      pending.clear();
      lossError = null;
      replay(ProxyMetrics.REPLAY_CONNECTION_LOST);
      return;
    }
    failUnit(lost.node());
  }

  /**
   * The server connection broke under work that may not run again (it may write, or part of its
   * reply already reached the client). What the client is told is what the loss means for its
   * transaction, never less:
   *
   * <ul>
   *   <li>a COMMIT (or PREPARE TRANSACTION) was in flight, or a write in an implicit transaction:
   *       the outcome is unknown, 08007, and the session is idle after it;
   *   <li>a transaction was open (the last ReadyForQuery said 'T' or 'E', or a BEGIN was sent): it
   *       failed, as PostgreSQL fails a transaction: the error, ReadyForQuery 'E', and 25P02 for
   *       everything until the client ends it ({@link FailedTransaction}). Its later statements
   *       never run outside it;
   *   <li>otherwise (a read): the error (08006, or the server's FATAL as an ERROR), idle after.
   * </ul>
   *
   * The client keeps its session: only between transactions is a lost server connection invisible.
   */
  private void failUnit(Endpoint node) {
    window.commit(ctx, false); // a partial reply of a unit that failed is not delivered
    unit.connectionLost(pending.awaits(Kind.LSN));
    boolean owed = pending.owesClient();
    ErrorResponse lost = lossError != null ? lossError : ClientErrors.connectionLost(node);
    byte after = ReadyForQuery.IDLE;
    if ((controlSent & SqlScan.COMMITS) != 0 && owed) {
      lost = ClientErrors.resolutionUnknown(node);
    } else if (txStatus != ReadyForQuery.IDLE || (controlSent & SqlScan.BEGINS) != 0) {
      after = FailedTransaction.FAILED;
      failed = new FailedTransaction(owed ? null : lost);
    } else if (owed && !unit.isRead()) {
      lost = ClientErrors.resolutionUnknown(node);
    }
    lossError = null;
    controlSent = 0;
    txStatus = after;
    if (pending.answerLost(ctx, lost, errorSent, midBatch, after)) {
      skipUntilSync = true; // the rest of the batch is skipped, as the server would
      dropBacklogUntilSync();
    }
    if (owed) {
      frontend.metrics().error(lost.sqlState().substring(0, 2), ProxyMetrics.PROXY);
    }
    midBatch = false;
    copyIn = false;
    errorSent = false;
    pins.clear(); // the state they protected died with the connection
    if (failed != null) {
      ByteBuf frame;
      while (!skipUntilSync && failed != null && (frame = backlog.poll()) != null) {
        answerFailed(frame);
      }
    }
    ctx.flush();
    if (!backlog.isEmpty() && !skipUntilSync) {
      acquire();
    }
  }

  /** The client's batch failed before its Sync: drop its messages up to the Sync and answer it. */
  private void dropBacklogUntilSync() {
    ByteBuf frame;
    while ((frame = backlog.poll()) != null) {
      byte type = Frames.type(frame);
      frame.release();
      if (type == FrontendMessageTypes.SYNC) {
        skipUntilSync = false;
        ctx.write(new ReadyForQuery(txStatus).encode(ctx.alloc()));
        return;
      }
    }
  }

  @Override
  public void serverWritable(boolean writable) {
    Channel channel = ctx.channel();
    if (server != null && !acquiring) {
      channel.config().setAutoRead(writable);
    }
  }

  private static String describe(byte type) {
    return type >= 0x20 && type < 0x7f ? "'" + (char) type + "'" : String.format("0x%02x", type);
  }
}
