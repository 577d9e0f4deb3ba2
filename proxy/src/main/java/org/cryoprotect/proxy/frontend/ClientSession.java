package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.EventLoop;
import io.netty.util.concurrent.ScheduledFuture;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.auth.TokenVerifier;
import org.cryoprotect.proxy.backend.ServerCredentials;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.pool.ServerPool;
import org.cryoprotect.proxy.pool.ServerUser;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.ProtocolException;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.cryoprotect.proxy.protocol.frontend.FrontendMessageTypes;
import org.cryoprotect.proxy.protocol.frontend.Query;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;
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
 * <p>The session holds the state; its phases live in their own files and read and write that state
 * on the session's loop: {@link ClientFrames} (the client's frames to the server), {@link Checkout}
 * (borrowing and preparing a server connection), {@link ServerReplies} (the server's frames against
 * the {@link ReplyQueue}), {@link UnitEnd} (ReadyForQuery with nothing owed: release, probe,
 * replay) and {@link ServerLoss} (what a lost server connection means). {@link ClientState} is
 * where the session is; {@link #moveTo} is the only way it changes.
 *
 * <p>Other collaborators: {@link StatementRenamer} (prepared statements), {@link SessionSettings}
 * (the client's settings and their capture), {@link UnitRoute} (where a unit runs, replays,
 * read-your-writes), {@link LocalAnswers} (replies without a server), {@link SessionStats} (bytes
 * and durations), {@link ClientErrors} (failures as the client is told them), {@link ClientView}
 * (what other threads see).
 *
 * <p>Confined to the client's event loop: the pool delivers server frames here too.
 */
final class ClientSession extends ChannelInboundHandlerAdapter implements ServerUser {
  private static final Logger log = LoggerFactory.getLogger(ClientSession.class);

  final ClientConnection client;
  final Frontend frontend;
  final ServerPool pool; // the primary's: client bookkeeping and greetings
  final Database database;
  final Router router;
  final boolean transactionMode;
  final StartupMessage serverStartup;
  final ServerCredentials credentials;
  final SessionSettings settings;
  final StatementRenamer statements;
  final Pins pins;

  final ArrayDeque<ByteBuf> backlog = new ArrayDeque<>();
  final ReplyQueue pending = new ReplyQueue();
  ChannelHandlerContext ctx;
  PooledServer server;
  ClientState state = ClientState.IDLE; // moved only by moveTo
  boolean preparing; // proxy-only messages in flight before the client's are sent
  int prepareAttempts;
  boolean loginPending = true;
  boolean midBatch; // extended-protocol messages sent since the last Sync
  boolean copyIn;
  boolean resetNeeded; // DISCARD ALL before the connection returns to the pool
  boolean skipUntilSync; // the pool failed this batch: drop frames up to its Sync
  boolean serverSkipping; // the server failed this batch before its Sync: it discards up to it
  private long heldSinceCheck; // bytes added to the backlog since it was last summed
  boolean applyRefused; // the server refused the client's settings: it is being closed
  byte txStatus = ReadyForQuery.IDLE;
  // Transaction control sent since the last ReadyForQuery (SqlScan bits): what a lost server
  // connection means depends on them (a BEGIN not yet answered, a COMMIT in flight).
  int controlSent;
  ErrorResponse lossError; // the server's FATAL that is ending the connection, if any
  FailedTransaction failed; // the transaction died with its server connection
  ScheduledFuture<?> drainDeadline;
  SessionClock clock; // limits.*_timeout; from handlerAdded on

  // Routing (DESIGN §5) and replay (DESIGN §4).
  final UnitRoute unit; // where the current unit runs, replays, read-your-writes
  final ReplayWindow window = new ReplayWindow();
  boolean errorSent; // an ErrorResponse reached the client since the last ReadyForQuery
  private final ClientView view; // what SHOW CLIENTS and the pool's statistics see
  final SessionStats stats;
  final AuditTrail trail; // null unless the login role is audited
  final CachedReads reads; // null unless the result cache may answer this client

  // The phases, each in its own file: the client's frames to the server, borrowing a server
  // connection, its replies, the end of a unit, the connection's loss.
  final Checkout checkout = new Checkout(this);
  private final ServerReplies replies = new ServerReplies(this);
  final ServerLoss loss = new ServerLoss(this);
  private final ClientFrames frames = new ClientFrames(this);
  final UnitEnd unitEnd = new UnitEnd(this);

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
            () -> frontend.config().limits().maxClientPreparedStatements(),
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
                if (state == ClientState.IDLE || state == ClientState.WAITING) {
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
      checkout.acquire();
    }
  }

  void greet(Map<String, String> parameters) {
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
        return state == ClientState.CLOSED || !ctx.channel().isActive();
      }

      @Override
      public boolean busy() {
        return !pending.isEmpty()
            || state == ClientState.WAITING
            || preparing
            || !backlog.isEmpty();
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

  /**
   * The one way the session's state changes: illegal moves are bugs and throw, a closed session
   * stays closed, and what SHOW CLIENTS and the pool's counts see follows.
   */
  void moveTo(ClientState next) {
    if (state == ClientState.CLOSED) {
      return;
    }
    if (!state.canMoveTo(next)) {
      throw new IllegalStateException(
          "client " + client.address() + ": no move from " + state + " to " + next);
    }
    state = next;
    view.state(next, next == ClientState.ACTIVE ? server.connection().keyData().processId() : 0);
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
    if (failed != null && state == ClientState.IDLE && backlog.isEmpty()) {
      answerFailed(frame);
      return;
    }
    if (state == ClientState.IDLE && answeredWithoutServer(frame)) {
      return;
    }
    if (server == null || preparing || window.isSealed() || !backlog.isEmpty()) {
      backlog.add(frame); // a server is borrowed at the end of the read, for the whole unit
      if (state == ClientState.WAITING) {
        checkout.heldWhileWaiting(frame.readableBytes());
      } else if ((heldSinceCheck += frame.readableBytes()) > maxBacklogBytes() / 4) {
        heldSinceCheck = 0; // the backlog is summed every quarter of the bound, not every frame
        refuseOversizedBacklog();
      }
      return;
    }
    sendOrRefuse(frame);
  }

  /**
   * The server connection's conversation ended without its ReadyForQuery (a replay, a loss): no
   * batch, COPY, error or transaction control is pending any more; the transaction is {@code
   * status} as the client will be told.
   */
  void conversationOver(byte status) {
    midBatch = false;
    serverSkipping = false;
    copyIn = false;
    errorSent = false;
    controlSent = 0;
    txStatus = status;
  }

  private long maxBacklogBytes() {
    return 2L * frontend.config().limits().maxMessageSize();
  }

  /**
   * What a client sends ahead of its unit's start is held, and while it waits for a server
   * connection reading pauses ({@link Checkout#heldWhileWaiting}). Before that, a unit that cannot
   * be routed until its end arrives (a batch of reads up to its Sync) must be read whole, so the
   * bound there is a refusal: two messages of the largest size allowed, or 54000.
   */
  private void refuseOversizedBacklog() {
    long bytes = 0;
    for (ByteBuf held : backlog) {
      bytes += held.readableBytes();
    }
    if (bytes > maxBacklogBytes()) {
      client.fatal(
          SqlState.PROGRAM_LIMIT_EXCEEDED,
          "the client sent "
              + bytes
              + " bytes ahead of its unit's start, more than twice limits.max_message_size");
    }
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
  void answerFailed(ByteBuf frame) {
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
      frames.send(frame);
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
      if (state == ClientState.IDLE && !backlog.isEmpty()) {
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
    if (state != ClientState.CLOSED && unit.canChoose(backlog)) {
      checkout.acquire();
    }
  }

  /** Another client's identical miss landed (or the wait ran out): look again, then run it. */
  private void cacheWaitOver() {
    if (state == ClientState.IDLE && !backlog.isEmpty()) {
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
    moveTo(ClientState.CLOSED);
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
        // PostgreSQL commits a batch's implicit transaction only at its Sync, which this client
        // never sent (directly, its backend would exit and roll back): the batch fails before the
        // proxy's Sync ends it, so that Sync rolls back what the batch did.
        write(Query.failBatch(ctx.alloc()));
        pending.add(Kind.EXECUTE, false);
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
        unitEnd.readyPoint();
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

  /** An audit record is on disk (null), or could not be journaled. */
  void auditDurable(Throwable error) {
    boolean clear = trail.settled();
    if (state == ClientState.CLOSED) {
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

  void write(ByteBuf frame) {
    server.channel().write(frame, server.channel().voidPromise());
  }

  /** One of the proxy's own simple queries; like any Query it drops the unnamed statement. */
  void writeOwn(Kind kind, String sql) {
    pending.add(kind, false);
    server.unnamed(null);
    write(Query.encode(ctx.alloc(), sql));
  }

  // ---------------------------------------------------------------- acquiring and preparing

  /** A JWT login whose token has expired ends with 28000, as PostgreSQL ends a login it refuses. */
  /** A JWT session whose token expired or was revoked ends (28000) before its next transaction. */
  boolean tokenExpired() {
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

  /** Sends what waited, up to the end of a unit that may still be replayed. */
  void sendBacklog() {
    ByteBuf frame;
    while (server != null && !preparing && !window.isSealed() && (frame = backlog.poll()) != null) {
      sendOrRefuse(frame);
    }
    if (server != null) {
      server.channel().flush();
      if (pending.isEmpty()) {
        unitEnd.readyPoint();
      }
    }
  }

  // ---------------------------------------------------------------- server side

  @Override
  public EventLoop loop() {
    return ctx.channel().eventLoop();
  }

  void toClient(ByteBuf frame, boolean wanted) {
    if (wanted && state != ClientState.CLOSED) {
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
  void commitWindow() {
    window.commit(ctx, true);
  }

  /** Replies the proxy owes, sent once everything before them has arrived. */
  void answerLocally() {
    Kind local;
    while ((local = pending.pollLocal()) != null) {
      if (state != ClientState.CLOSED) {
        reply(Query.empty(ctx.alloc(), local == Kind.LOCAL_PARSE_COMPLETE ? '1' : '3'));
      }
    }
  }

  @Override
  public void serverFrame(ByteBuf frame) {
    replies.frame(frame);
  }

  @Override
  public void serverClosed(PooledServer lost) {
    loss.closed(lost);
  }

  @Override
  public void serverReadComplete() {
    if (state != ClientState.CLOSED) {
      ctx.flush();
    }
  }

  /** The server connection is no longer the client's: the node has one transaction less. */
  void leftNode() {
    unit.left();
  }

  @Override
  public void serverWritable(boolean writable) {
    Channel channel = ctx.channel();
    if (server != null && state != ClientState.WAITING) {
      channel.config().setAutoRead(writable);
    }
  }

  private static String describe(byte type) {
    return type >= 0x20 && type < 0x7f ? "'" + (char) type + "'" : String.format("0x%02x", type);
  }
}
