package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.EventLoop;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.ScheduledFuture;
import java.util.ArrayDeque;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.backend.ServerCredentials;
import org.cryoprotect.proxy.backend.ServerException;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.PoolClient;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.pool.PreparedRegistry;
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
import org.cryoprotect.proxy.protocol.frontend.Target;
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
 * <p>Confined to the client's event loop: the pool delivers server frames here too.
 */
final class ClientSession extends ChannelInboundHandlerAdapter implements ServerUser, PoolClient {
  private static final Logger log = LoggerFactory.getLogger(ClientSession.class);

  /** Startup parameters that are not session settings. */
  private static final List<String> NOT_SETTINGS =
      List.of("user", "database", "replication", "options");

  /** What the session parameters of a server connection are after the client's transaction. */
  private static final String SNAPSHOT_SQL =
      "SELECT name, setting FROM pg_catalog.pg_settings"
          + " WHERE source = 'session' AND name NOT IN ('role', 'session_authorization')"
          + " UNION ALL SELECT 'role', pg_catalog.current_setting('role')"
          + " WHERE pg_catalog.current_setting('role') <> 'none'";

  private static final int MAX_PREPARE_ATTEMPTS = 3;

  /** Every statement runs on the primary until replica routing exists. */
  private static final String ROUTE = "primary";

  private enum Kind {
    PARSE,
    BIND,
    DESCRIBE,
    EXECUTE,
    CLOSE,
    SYNC,
    QUERY,
    FUNCTION,
    /** The proxy's own simple query (check, reset): its replies never reach the client. */
    INJECTED,
    /** The client's session settings applied at checkout; recorded on the server when done. */
    APPLY,
    /** The session-state snapshot query; its rows are read here. */
    SNAPSHOT,
    /** A reply the proxy owes the client without asking the server: ParseComplete. */
    LOCAL_PARSE_COMPLETE,
    /** CloseComplete for a statement Close answered locally. */
    LOCAL_CLOSE_COMPLETE
  }

  /** One reply (sequence) the server or the proxy still owes. */
  private static final class Pending {
    final Kind kind;
    final boolean toClient;
    final String statement; // proxy statement name for PARSE and BIND, else null
    PreparedRegistry.Entry entry; // for PARSE: marked verified when the server accepts it

    Pending(Kind kind, boolean toClient, String statement) {
      this.kind = kind;
      this.toClient = toClient;
      this.statement = statement;
    }
  }

  private final ClientConnection client;
  private final Frontend frontend;
  private final ServerPool pool;
  private final boolean transactionMode;
  private final StartupMessage serverStartup;
  private final ServerCredentials credentials;
  private final Map<String, String> startupSettings;
  private Map<String, String> desired;
  private final Map<String, PreparedRegistry.Entry> statements = new HashMap<>();
  private final EnumSet<Pin> pins = EnumSet.noneOf(Pin.class);

  private final ArrayDeque<ByteBuf> backlog = new ArrayDeque<>();
  private final ArrayDeque<Pending> pending = new ArrayDeque<>();
  private ChannelHandlerContext ctx;
  private PooledServer server;
  private boolean acquiring;
  private boolean preparing; // proxy-only messages in flight before the client's are sent
  private int prepareAttempts;
  private boolean loginPending = true;
  private boolean midBatch; // extended-protocol messages sent since the last Sync
  private boolean copyIn;
  private boolean snapshotNeeded;
  private boolean resetNeeded; // DISCARD ALL before the connection returns to the pool
  private boolean skipUntilSync; // the pool failed this batch: drop frames up to its Sync
  private boolean closing; // the client is gone: drain, clean up, return the connection
  private byte txStatus = ReadyForQuery.IDLE;
  private List<String> snapshotRow;
  private Map<String, String> snapshot;
  private ScheduledFuture<?> drainDeadline;
  private long acquireStart;
  private long queryStart; // first client message since the last ReadyForQuery, or 0
  private long xactStart; // first client message since the last ReadyForQuery 'I', or 0
  private volatile String state = "idle"; // for SHOW CLIENTS, read from other threads
  private volatile int serverPid;

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
    this.transactionMode = transactionMode;
    this.serverStartup = serverStartup;
    this.credentials = credentials;
    this.startupSettings = settingsOf(client.startup());
    this.desired = startupSettings;
  }

  /** The client's startup parameters that are session settings, including {@code -c} options. */
  static Map<String, String> settingsOf(StartupMessage startup) {
    Map<String, String> settings = new LinkedHashMap<>();
    startup
        .parameters()
        .forEach(
            (k, v) -> {
              if (!NOT_SETTINGS.contains(k) && !k.startsWith("_pq_")) {
                settings.put(k, v);
              }
            });
    String options = startup.parameters().get("options");
    if (options != null) {
      String[] words = options.trim().split("\\s+");
      for (int i = 0; i < words.length; i++) {
        String setting = null;
        if (words[i].equals("-c") && i + 1 < words.length) {
          setting = words[++i];
        } else if (words[i].startsWith("-c")) {
          setting = words[i].substring(2);
        } else if (words[i].startsWith("--")) {
          setting = words[i].substring(2);
        }
        int eq = setting == null ? -1 : setting.indexOf('=');
        if (eq > 0) {
          settings.put(setting.substring(0, eq).replace('-', '_'), setting.substring(eq + 1));
        }
      }
    }
    return Map.copyOf(settings);
  }

  // ---------------------------------------------------------------- login

  @Override
  public void handlerAdded(ChannelHandlerContext ctx) {
    this.ctx = ctx;
    Map<String, String> welcome = transactionMode ? pool.welcome(desired) : null;
    if (welcome != null) {
      greet(welcome);
    } else {
      acquire();
    }
  }

  private void greet(Map<String, String> parameters) {
    loginPending = false;
    pool.joined(this);
    frontend.metrics().clientLogin(database(), user());
    client.welcome(ctx, parameters, frontend.loggedIn());
  }

  // ---------------------------------------------------------------- client side

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
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
    if (server == null && !acquiring && answeredWithoutServer(frame)) {
      return;
    }
    if (server == null || preparing) {
      backlog.add(frame);
      if (server == null && !acquiring) {
        acquire();
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
    byte type = Frames.type(frame);
    switch (type) {
      case 'P' -> {
        Parse parse = Parse.decode(Frames.body(frame));
        if (parse.name().isEmpty()) {
          return false;
        }
        PreparedRegistry.Entry entry =
            frontend.pools().prepared().register(parse.query(), parse.paramTypes());
        if (!entry.verified()) {
          return false;
        }
        frame.release();
        statements.put(parse.name(), entry);
        ctx.write(Query.empty(ctx.alloc(), '1'));
      }
      case 'C' -> {
        Target target = Target.decode('C', Frames.body(frame));
        if (!target.isStatement() || target.name().isEmpty()) {
          return false;
        }
        frame.release();
        statements.remove(target.name());
        ctx.write(Query.empty(ctx.alloc(), '3'));
      }
      case 'S' -> {
        frame.release();
        ctx.write(new ReadyForQuery(txStatus).encode(ctx.alloc()));
      }
      case 'H' -> {
        frame.release();
        ctx.flush();
      }
      default -> {
        return false;
      }
    }
    return true;
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
    pool.left(this);
    if (!loginPending) {
      frontend.metrics().clientClosed(database(), user());
    }
    releaseBacklog();
    if (server != null) {
      client.server(null);
      // Backpressure from this client no longer applies: drain the server at full speed.
      server.channel().config().setAutoRead(true);
      if (copyIn) {
        write(Query.copyFail(ctx.alloc(), "client disconnected"));
        copyIn = false;
      }
      if (midBatch) {
        write(Query.empty(ctx.alloc(), 'S'));
        pending.add(new Pending(Kind.SYNC, false, null));
        midBatch = false;
      }
      server.channel().flush();
      drainDeadline =
          loop()
              .schedule(
                  () -> {
                    if (server != null) {
                      log.info("{}: server connection did not settle after client left", server);
                      pool.discard(server);
                      server = null;
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
    pool.received(frame.readableBytes());
    frontend.metrics().bytes("in", frame.readableBytes());
    long now = System.nanoTime();
    if (queryStart == 0) {
      queryStart = now;
    }
    if (xactStart == 0) {
      xactStart = now;
    }
    switch (type) {
      case 'Q' -> {
        String sql = Query.textOrNull(frame); // malformed: the server answers for itself
        if (sql != null) {
          noteEffects(SqlScan.scan(sql));
        }
        pending.add(new Pending(Kind.QUERY, true, null));
        write(frame);
      }
      case 'P' -> parse(frame);
      case 'B' -> bind(frame);
      case 'D' -> describe(frame);
      case 'E' -> extended(frame, Kind.EXECUTE);
      case 'C' -> close(frame);
      case 'S' -> {
        midBatch = false;
        pending.add(new Pending(Kind.SYNC, true, null));
        write(frame);
      }
      case 'F' -> {
        pending.add(new Pending(Kind.FUNCTION, true, null));
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
    pending.add(new Pending(kind, true, null));
    write(frame);
  }

  private void parse(ByteBuf frame) {
    midBatch = true;
    Parse parse = Parse.decode(Frames.body(frame));
    if (!transactionMode || parse.name().isEmpty()) {
      noteEffects(SqlScan.scan(parse.query()));
      pending.add(new Pending(Kind.PARSE, true, null));
      write(frame);
      return;
    }
    frame.release();
    PreparedRegistry.Entry entry =
        frontend.pools().prepared().register(parse.query(), parse.paramTypes());
    statements.put(parse.name(), entry);
    if (server.hasPrepared(entry.name())) {
      local(Kind.LOCAL_PARSE_COMPLETE);
    } else {
      prepareOnServer(entry, true);
    }
  }

  private void bind(ByteBuf frame) {
    midBatch = true;
    String name = transactionMode ? Bind.statement(frame) : "";
    PreparedRegistry.Entry entry = name.isEmpty() ? null : statements.get(name);
    if (entry == null) {
      pending.add(new Pending(Kind.BIND, true, null)); // unnamed, or unknown: the server says so
      write(frame);
      return;
    }
    noteEffects(entry.effects());
    ensurePrepared(entry);
    ByteBuf renamed = Bind.withStatement(ctx.alloc(), frame, entry.name());
    frame.release();
    pending.add(new Pending(Kind.BIND, true, entry.name()));
    write(renamed);
  }

  private void describe(ByteBuf frame) {
    midBatch = true;
    Target target = Target.decode('D', Frames.body(frame));
    PreparedRegistry.Entry entry =
        transactionMode && target.isStatement() ? statements.get(target.name()) : null;
    if (entry == null) {
      pending.add(new Pending(Kind.DESCRIBE, true, null));
      write(frame);
      return;
    }
    frame.release();
    ensurePrepared(entry);
    pending.add(new Pending(Kind.DESCRIBE, true, null));
    write(target.withName(entry.name()).encode(ctx.alloc()));
  }

  private void close(ByteBuf frame) {
    midBatch = true;
    Target target = Target.decode('C', Frames.body(frame));
    if (transactionMode && target.isStatement() && !target.name().isEmpty()) {
      // Other clients may share the server-side statement: the client's name is what goes away.
      frame.release();
      statements.remove(target.name());
      local(Kind.LOCAL_CLOSE_COMPLETE);
      return;
    }
    pending.add(new Pending(Kind.CLOSE, true, null));
    write(frame);
  }

  private void ensurePrepared(PreparedRegistry.Entry entry) {
    if (!server.hasPrepared(entry.name())) {
      prepareOnServer(entry, false);
    }
  }

  /** Sends the proxy-named Parse; its ParseComplete goes to the client only if it asked. */
  private void prepareOnServer(PreparedRegistry.Entry entry, boolean clientAsked) {
    if (server.takeCloseBeforeParse(entry.name())) {
      closeOnServer(entry.name());
    }
    String evicted = server.addPrepared(entry.name(), frontend.config().pool().preparedPerServer());
    if (evicted != null) {
      closeOnServer(evicted);
      frontend.metrics().preparedEviction();
    }
    frontend.metrics().serverPrepare();
    Pending parse = new Pending(Kind.PARSE, clientAsked, entry.name());
    parse.entry = entry;
    pending.add(parse);
    write(entry.parse().encode(ctx.alloc()));
  }

  private void closeOnServer(String statement) {
    pending.add(new Pending(Kind.CLOSE, false, null));
    write(new Target('C', Target.STATEMENT, statement).encode(ctx.alloc()));
  }

  private void local(Kind kind) {
    pending.add(new Pending(kind, true, null));
    answerLocally();
  }

  private void noteEffects(SqlScan.Effects effects) {
    if (effects.isNone()) {
      return;
    }
    if (effects.changesSession()) {
      snapshotNeeded = true;
    }
    if (!effects.releases().isEmpty()) {
      pins.removeAll(effects.releases());
    }
    if (!effects.pins().isEmpty()) {
      if (!pins.containsAll(effects.pins())) {
        log.debug("client {} pinned to {} for {}", client.address(), server, effects.pins());
      }
      for (Pin pin : effects.pins()) {
        if (pins.add(pin)) {
          frontend.metrics().pin(pin.name().toLowerCase(java.util.Locale.ROOT));
        }
      }
    }
  }

  private void write(ByteBuf frame) {
    server.channel().write(frame, server.channel().voidPromise());
  }

  // ---------------------------------------------------------------- acquiring and preparing

  private void acquire() {
    acquiring = true;
    state = "waiting";
    acquireStart = System.nanoTime();
    ctx.channel().config().setAutoRead(false);
    pool.acquire(loop(), serverStartup, credentials).addListener(this::acquired);
  }

  private void acquired(Future<? super PooledServer> f) {
    acquiring = false;
    state = f.isSuccess() ? "active" : "idle";
    if (!f.isSuccess()) {
      acquireFailed(f.cause());
      return;
    }
    frontend
        .metrics()
        .checkout(
            client.database().name(),
            pool.key().node().toString(),
            System.nanoTime() - acquireStart);
    PooledServer s = (PooledServer) f.getNow();
    if (closing) {
      pool.release(s);
      return;
    }
    server = s;
    serverPid = s.connection().keyData().processId();
    server.attach(this);
    client.server(server.connection());
    String check = checkoutSql();
    if (check != null) {
      preparing = true;
      pending.add(new Pending(check.equals(";") ? Kind.INJECTED : Kind.APPLY, false, null));
      write(Query.encode(ctx.alloc(), check));
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
    if (!desired.equals(server.applied())) {
      StringBuilder sql = new StringBuilder("SET SESSION AUTHORIZATION DEFAULT; RESET ALL;");
      if (!desired.isEmpty()) {
        sql.append(" SELECT ");
        String sep = "";
        String role = null;
        for (Map.Entry<String, String> e : desired.entrySet()) {
          if (e.getKey().equals("role")) {
            role = e.getValue(); // last: other settings may need the login role's rights
            continue;
          }
          sql.append(sep).append(setConfig(e.getKey(), e.getValue()));
          sep = ", ";
        }
        if (role != null) {
          sql.append(sep).append(setConfig("role", role));
        }
      }
      return sql.toString();
    }
    long idleNanos = server.idleNanos();
    if (loginPending || idleNanos > frontend.config().pool().serverCheckDelay().toNanos()) {
      return ";";
    }
    return null;
  }

  private static String setConfig(String name, String value) {
    return "pg_catalog.set_config(" + literal(name) + ", " + literal(value) + ", false)";
  }

  /** An escape-string literal: correct whatever standard_conforming_strings is. */
  static String literal(String s) {
    return "E'" + s.replace("\\", "\\\\").replace("'", "''") + "'";
  }

  private void acquireFailed(Throwable cause) {
    if (loginPending) {
      if (cause instanceof ServerException e && e.serverError() != null) {
        String code = e.serverError().sqlState();
        if (code != null && code.length() == 5) {
          frontend.metrics().error(code.substring(0, 2), ProxyMetrics.SERVER);
        }
        client.closeReason("server refused login: " + e.serverError());
        client.sendAndClose(e.serverError().encode(ctx.alloc()));
      } else if (cause instanceof ServerException e) {
        client.fatal(e.state(), e.getMessage());
      } else {
        client.fatal(SqlState.CONNECTION_FAILURE, "server login failed: " + cause);
      }
      return;
    }
    if (closing) {
      return;
    }
    // The session survives: the client's batch gets the error, as a server error would.
    ErrorResponse error =
        cause instanceof ServerException e && e.serverError() != null
            ? e.serverError()
            : ErrorResponse.of(
                Severity.ERROR,
                cause instanceof ServerException e ? e.state() : SqlState.CONNECTION_FAILURE,
                cause.getMessage());
    ctx.write(error.withSeverity(Severity.ERROR).encode(ctx.alloc()));
    String code = error.sqlState();
    frontend.metrics().error(code == null ? "XX" : code.substring(0, 2), "proxy");
    int readies = 0;
    boolean unsynced = false;
    ByteBuf frame;
    while ((frame = backlog.poll()) != null) {
      byte type = Frames.type(frame);
      if (type == 'Q' || type == 'S' || type == 'F') {
        readies++;
        unsynced = false;
      } else if (type != 'H') {
        unsynced = true;
      }
      frame.release();
    }
    for (int i = 0; i < readies; i++) {
      ctx.write(new ReadyForQuery(txStatus).encode(ctx.alloc()));
    }
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
        pool.welcome(desired, parameters);
      }
      greet(parameters);
    }
    ctx.channel().config().setAutoRead(ctx.channel().isWritable());
    ByteBuf frame;
    while (server != null && !preparing && (frame = backlog.poll()) != null) {
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
    Pending head = pending.peekFirst();
    switch (type) {
      case 'S' -> {
        ParameterStatus status = ParameterStatus.decode(Frames.body(frame));
        server.reported().put(status.name(), status.value());
        if (head != null && head.toClient && transactionMode) {
          snapshotNeeded = true; // the client changed a reported setting, maybe in a function
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
      log.debug("{}: reply '{}' nobody waited for", server, (char) type);
      toClient(frame, true);
      return;
    }
    if (type == 'E') {
      serverError(frame, head);
    } else {
      if (head.kind == Kind.SNAPSHOT && type == 'D') {
        snapshotRow = DataRow.texts(Frames.body(frame));
        snapshot.put(snapshotRow.get(0), snapshotRow.get(1));
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
      }
      toClient(frame, head.toClient);
      if (isLast(head.kind, type)) {
        pending.pollFirst();
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
      pool.sent(frame.readableBytes());
      frontend.metrics().bytes("out", frame.readableBytes());
      ctx.write(frame, ctx.voidPromise());
    } else {
      frame.release();
    }
  }

  /** Whether {@code type} ends the replies to a message of {@code kind}. */
  private static boolean isLast(Kind kind, byte type) {
    return switch (kind) {
      case PARSE -> type == '1';
      case BIND -> type == '2';
      case DESCRIBE -> type == 'T' || type == 'n';
      case EXECUTE -> type == 'C' || type == 'I' || type == 's';
      case CLOSE -> type == '3';
      case SYNC, QUERY, FUNCTION, INJECTED, APPLY, SNAPSHOT -> type == 'Z';
      case LOCAL_PARSE_COMPLETE, LOCAL_CLOSE_COMPLETE -> false;
    };
  }

  /** Replies the proxy owes, sent once everything before them has arrived. */
  private void answerLocally() {
    Pending head;
    while ((head = pending.peekFirst()) != null
        && (head.kind == Kind.LOCAL_PARSE_COMPLETE || head.kind == Kind.LOCAL_CLOSE_COMPLETE)) {
      pending.pollFirst();
      if (!closing) {
        ctx.write(Query.empty(ctx.alloc(), head.kind == Kind.LOCAL_PARSE_COMPLETE ? '1' : '3'));
      }
    }
  }

  private void finished(Pending done) {
    if (done.toClient
        && (done.kind == Kind.QUERY || done.kind == Kind.SYNC || done.kind == Kind.FUNCTION)) {
      long now = System.nanoTime();
      if (queryStart != 0) {
        pool.query(now - queryStart);
        frontend.metrics().query(database(), ROUTE, now - queryStart);
        queryStart = 0;
      }
      if (txStatus == ReadyForQuery.IDLE && xactStart != 0) {
        pool.transaction(now - xactStart);
        frontend.metrics().transaction(database(), ROUTE, now - xactStart);
        xactStart = 0;
      }
    }
    if (done.kind == Kind.PARSE && done.entry != null) {
      done.entry.verified(true);
    } else if (done.kind == Kind.APPLY) {
      server.applied(desired);
    } else if (done.kind == Kind.SNAPSHOT) {
      Map<String, String> now = Map.copyOf(snapshot);
      server.applied(now);
      // RESET restores the startup value, as on a direct connection.
      Map<String, String> merged = new LinkedHashMap<>(startupSettings);
      merged.putAll(now);
      desired = Map.copyOf(merged);
      snapshot = null;
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
      statements.clear();
      pins.remove(Pin.PREPARE);
      if (tag.equals("DISCARD ALL")) {
        pins.clear();
        server.applied(Map.of());
        snapshotNeeded = transactionMode;
      }
    }
  }

  /**
   * An ErrorResponse ends the failing message; in the extended protocol the server then skips
   * everything up to Sync, so what the proxy queued for those messages is dropped as well.
   */
  private void serverError(ByteBuf frame, Pending head) {
    if (head.kind == Kind.INJECTED || head.kind == Kind.APPLY || head.kind == Kind.SNAPSHOT) {
      ErrorResponse error = ErrorResponse.decode('E', Frames.body(frame));
      frame.release();
      if (preparing && !closing && prepareAttempts + 1 < MAX_PREPARE_ATTEMPTS) {
        // Nothing of the client's reached this connection yet (it died, or was terminated,
        // while idle): drop it and borrow another.
        log.info("{}: check before use failed ({}), trying another", server, error.message());
        server.markBroken();
        serverClosed();
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
    if (sqlState != null && sqlState.length() == 5) {
      frontend.metrics().error(sqlState.substring(0, 2), "server");
    }
    if (head.kind == Kind.BIND && head.statement != null && isStalePlan(frame)) {
      server.invalidatePrepared(head.statement);
    }
    toClient(frame, true);
    if (!extended) {
      return;
    }
    pending.pollFirst();
    forgetIfParse(head);
    while ((head = pending.peekFirst()) != null && head.kind != Kind.SYNC) {
      pending.pollFirst();
      forgetIfParse(head);
    }
  }

  private void forgetIfParse(Pending p) {
    if (p.kind == Kind.PARSE && p.statement != null) {
      server.forgetPrepared(p.statement);
    }
  }

  /** "cached plan must not change result type": the server's statement is stale after DDL. */
  private static boolean isStalePlan(ByteBuf frame) {
    ErrorResponse error = ErrorResponse.decode('E', Frames.body(frame));
    return SqlState.FEATURE_NOT_SUPPORTED.code().equals(error.sqlState())
        && error.message() != null
        && error.message().contains("cached plan must not change result type");
  }

  /** Nothing is outstanding and the server said ReadyForQuery: what next for the connection? */
  private void readyPoint() {
    ctx.flush();
    if (closing) {
      cleanUpAfterClient();
      return;
    }
    if (preparing) {
      ready();
      return;
    }
    if (txStatus != ReadyForQuery.IDLE || midBatch || copyIn || !backlog.isEmpty()) {
      return;
    }
    if (transactionMode && snapshotNeeded) {
      snapshotNeeded = false;
      snapshot = new LinkedHashMap<>();
      pending.add(new Pending(Kind.SNAPSHOT, false, null));
      write(Query.encode(ctx.alloc(), SNAPSHOT_SQL));
      server.channel().flush();
      return;
    }
    if (transactionMode && pins.isEmpty()) {
      releaseServer();
    }
  }

  /** The client left: roll back, reset what cannot be kept, and give the connection back. */
  private void cleanUpAfterClient() {
    if (snapshotNeeded) {
      // The client may have changed settings it never told us about: re-apply before reuse.
      snapshotNeeded = false;
      server.applied(null);
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
    pending.add(new Pending(Kind.INJECTED, false, null));
    write(Query.encode(ctx.alloc(), sql));
    server.channel().flush();
  }

  private void releaseServer() {
    if (drainDeadline != null) {
      drainDeadline.cancel(false);
      drainDeadline = null;
    }
    PooledServer s = server;
    server = null;
    state = "idle";
    serverPid = 0;
    client.server(null);
    resetNeeded = false;
    pool.release(s);
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

  @Override
  public void serverClosed() {
    PooledServer lost = server;
    if (lost == null) {
      return;
    }
    server = null;
    state = "idle";
    serverPid = 0;
    client.server(null);
    pool.discard(lost);
    pending.clear();
    if (closing) {
      return;
    }
    ctx.channel().config().setAutoRead(true);
    if (preparing && ++prepareAttempts < MAX_PREPARE_ATTEMPTS) {
      // Nothing of the client's was sent yet: another connection will do.
      preparing = false;
      acquire();
      return;
    }
    client.fatal(SqlState.CONNECTION_FAILURE, "server connection to " + lost.node() + " was lost");
  }

  @Override
  public void serverWritable(boolean writable) {
    Channel channel = ctx.channel();
    if (server != null && !acquiring) {
      channel.config().setAutoRead(writable);
    }
  }

  // ---------------------------------------------------------------- PoolClient

  @Override
  public String state() {
    return state;
  }

  @Override
  public String address() {
    return client.address();
  }

  @Override
  public String user() {
    return client.user();
  }

  @Override
  public String database() {
    return client.database().name();
  }

  @Override
  public long connectedAtMillis() {
    return client.openedMillis();
  }

  @Override
  public String applicationName() {
    String name = desired.get("application_name");
    return name == null ? "" : name;
  }

  @Override
  public boolean tls() {
    return client.tls();
  }

  @Override
  public int serverPid() {
    return serverPid;
  }

  @Override
  public int preparedStatements() {
    return statements.size();
  }

  @Override
  public void kill(String reason) {
    loop().execute(() -> client.fatal(SqlState.ADMIN_SHUTDOWN, reason));
  }

  private static String describe(byte type) {
    return type >= 0x20 && type < 0x7f ? "'" + (char) type + "'" : String.format("0x%02x", type);
  }
}
