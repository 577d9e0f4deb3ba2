package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import java.net.InetSocketAddress;
import java.util.Map;
import java.util.concurrent.ScheduledFuture;
import org.cryoprotect.proxy.auth.TokenVerifier;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationOk;
import org.cryoprotect.proxy.protocol.backend.BackendKeyData;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.cryoprotect.proxy.protocol.backend.ParameterStatus;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One client from accept to close. Confined to the client channel's event loop (STYLE rule 6):
 * every field is read and written there only, except {@link #keyData} which is final.
 */
public final class ClientConnection {
  private static final Logger log = LoggerFactory.getLogger("org.cryoprotect.proxy.connections");

  private final Channel channel;
  private final BackendKeyData keyData;
  private final long openedNanos = System.nanoTime();
  private final long openedMillis = System.currentTimeMillis();
  private StartupMessage startup;
  private Database database;
  // Volatile: a CancelRequest arrives on another connection and reads it from its own loop.
  private volatile PooledServer server;
  private ScheduledFuture<?> loginTimeout;
  private String closeReason = "client disconnected";
  private boolean tls;
  private boolean admin;
  private TokenVerifier.Verified token; // a JWT login's verified token
  private boolean notAdmin; // asked for the admin console but is not in auth.admin_users
  private boolean counted;
  private ProxyMetrics metrics = ProxyMetrics.NONE;

  ClientConnection(Channel channel, BackendKeyData keyData) {
    this.channel = channel;
    this.keyData = keyData;
  }

  public Channel channel() {
    return channel;
  }

  public long openedMillis() {
    return openedMillis;
  }

  public BackendKeyData keyData() {
    return keyData;
  }

  public StartupMessage startup() {
    return startup;
  }

  void startup(StartupMessage startup, Database database) {
    this.startup = startup;
    this.database = database;
  }

  public Database database() {
    return database;
  }

  public String user() {
    return startup == null ? null : startup.user();
  }

  /** The role the server connection logs in as: the token's mapped role, else the user. */
  String loginRole() {
    return token != null ? token.role() : user();
  }

  /** The verified token of a JWT login, or null. */
  TokenVerifier.Verified token() {
    return token;
  }

  void token(TokenVerifier.Verified token) {
    this.token = token;
  }

  public PooledServer server() {
    return server;
  }

  void server(PooledServer server) {
    this.server = server;
  }

  boolean admin() {
    return admin;
  }

  void admin(boolean admin) {
    this.admin = admin;
  }

  /**
   * The client asked for the admin console as a user not in {@code auth.admin_users}: it goes
   * through the same password exchange as an unknown user and fails at its end, so that the answer
   * does not tell who the admins are.
   */
  boolean notAdmin() {
    return notAdmin;
  }

  void notAdmin(boolean notAdmin) {
    this.notAdmin = notAdmin;
  }

  boolean tls() {
    return tls;
  }

  void tls(boolean tls) {
    this.tls = tls;
  }

  void loginTimeout(ScheduledFuture<?> timeout) {
    this.loginTimeout = timeout;
  }

  /** Counts the client among the logged-in ones (max_client_connections, clientCount()). */
  void count(java.util.concurrent.atomic.AtomicInteger loggedIn) {
    // A login that completes after the channel closed (server replies still queued on this loop
    // when the close happened) must not be counted: the close was already accounted for.
    if (!counted && channel.isActive()) {
      counted = true;
      loggedIn.incrementAndGet();
    }
  }

  void metrics(ProxyMetrics metrics) {
    this.metrics = metrics;
  }

  boolean counted() {
    return counted;
  }

  /** Login finished: the startup and authentication deadline no longer applies. */
  void loggedIn() {
    if (loginTimeout != null) {
      loginTimeout.cancel(false);
      loginTimeout = null;
    }
  }

  /**
   * Login is complete: AuthenticationOk, the ParameterStatus values, the proxy's cancel key,
   * ReadyForQuery; the client is counted, its login deadline cancelled, and reading starts.
   */
  void welcome(
      ChannelHandlerContext ctx,
      Map<String, String> parameters,
      java.util.concurrent.atomic.AtomicInteger loggedIn) {
    count(loggedIn);
    loggedIn();
    // One buffer for the 15-20 small messages of a login: one allocation and one write, not one
    // per message (it shows in connect-per-transaction workloads).
    ByteBuf greeting = ctx.alloc().buffer(512);
    new AuthenticationOk().writeTo(greeting);
    parameters.forEach((k, v) -> new ParameterStatus(k, v).writeTo(greeting));
    keyData.writeTo(greeting);
    new ReadyForQuery(ReadyForQuery.IDLE).writeTo(greeting);
    ctx.writeAndFlush(greeting);
    logOpened();
    ctx.channel().config().setAutoRead(true);
  }

  /** Sends a FATAL error and closes: the end of every connection the proxy refuses or ends. */
  public void fatal(SqlState state, String message) {
    closeReason = state.code() + " " + message;
    metrics.error(state.code().substring(0, 2), ProxyMetrics.PROXY);
    sendAndClose(ErrorResponse.of(Severity.FATAL, state, message).encode(channel.alloc()));
  }

  /** Forwards a server's own FATAL error byte for byte, then closes. */
  void sendAndClose(ByteBuf errorFrame) {
    if (channel.isActive()) {
      channel.writeAndFlush(errorFrame).addListener(ChannelFutureListener.CLOSE);
    } else {
      errorFrame.release();
    }
  }

  void closeReason(String reason) {
    this.closeReason = reason;
  }

  /** One line per connection, never with secrets: address, database, user, duration, reason. */
  void logClosed() {
    long millis = (System.nanoTime() - openedNanos) / 1_000_000;
    log.info(
        "client {} db={} user={} tls={} closed after {} ms: {}",
        address(),
        database == null ? "-" : database.name(),
        user() == null ? "-" : user(),
        tls,
        millis,
        closeReason);
  }

  void logOpened() {
    log.info(
        "client {} db={} user={} tls={} logged in to {}",
        address(),
        database.name(),
        user(),
        tls,
        server == null ? "-" : server.node());
  }

  /** The client's IP address, or null when it has none (a Unix socket). */
  String host() {
    return channel.remoteAddress() instanceof InetSocketAddress a
        ? a.getAddress().getHostAddress()
        : null;
  }

  String address() {
    return channel.remoteAddress() instanceof InetSocketAddress a
        ? a.getAddress().getHostAddress() + ":" + a.getPort()
        : String.valueOf(channel.remoteAddress());
  }
}
