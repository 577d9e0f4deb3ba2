package org.cryoprotect.proxy.frontend;

import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.ssl.SslHandler;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.ClientTlsMode;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.protocol.PgFrameDecoder;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.NegotiateProtocolVersion;
import org.cryoprotect.proxy.protocol.frontend.CancelRequest;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;
import org.cryoprotect.proxy.protocol.frontend.StartupPacket.GSSENCRequest;
import org.cryoprotect.proxy.protocol.frontend.StartupPacket.SSLRequest;

/**
 * The startup phase: encryption negotiation, CancelRequest, and the StartupMessage, which is
 * checked (protocol version, user, database, limits) before authentication takes over.
 */
public final class ClientStartupHandler extends ChannelInboundHandlerAdapter {
  private static final byte[] YES = {'S'};
  private static final byte[] NO = {'N'};

  private final Frontend frontend;
  private ClientConnection client;

  public ClientStartupHandler(Frontend frontend) {
    this.frontend = frontend;
  }

  @Override
  public void channelActive(ChannelHandlerContext ctx) {
    client = frontend.cancels().newClient(ctx.channel());
    client.metrics(frontend.metrics());
    long timeout = frontend.config().limits().clientLoginTimeout().toMillis();
    client.loginTimeout(
        ctx.executor()
            .schedule(
                () ->
                    client.fatal(
                        SqlState.PROTOCOL_VIOLATION,
                        "client did not complete login within " + timeout + " ms"),
                timeout,
                TimeUnit.MILLISECONDS));
    ctx.channel().closeFuture().addListener(f -> closed());
    ctx.read();
    ctx.fireChannelActive();
  }

  private void closed() {
    client.loggedIn(); // cancels the login timeout if it is still pending
    frontend.cancels().unregister(client);
    // The session returns or closes its server connection itself (ClientSession.channelInactive).
    if (client.counted()) {
      frontend.loggedIn().decrementAndGet();
    }
    if (client.startup() != null) {
      client.logClosed();
    }
  }

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
    if (msg instanceof SSLRequest) {
      negotiateTls(ctx);
    } else if (msg instanceof GSSENCRequest) {
      ctx.writeAndFlush(Unpooled.wrappedBuffer(NO));
      ctx.read();
    } else if (msg instanceof CancelRequest cancel) {
      frontend.cancels().cancel(cancel, ctx.channel().eventLoop(), frontend.connector());
      ctx.close();
    } else if (msg instanceof StartupMessage startup) {
      startup(ctx, startup);
    }
  }

  private void negotiateTls(ChannelHandlerContext ctx) {
    if (frontend.tls() == null || client.tls()) {
      ctx.writeAndFlush(Unpooled.wrappedBuffer(NO));
      ctx.read();
      return;
    }
    client.tls(true);
    // The 'S' must leave in clear text before the TLS handler sits in front of the pipeline.
    ctx.writeAndFlush(Unpooled.wrappedBuffer(YES))
        .addListener(
            f -> {
              if (f.isSuccess()) {
                SslHandler ssl = frontend.tls().newHandler(ctx.alloc());
                ctx.pipeline().addFirst("tls", ssl);
                ctx.read();
              }
            });
  }

  private void startup(ChannelHandlerContext ctx, StartupMessage startup) {
    ProxyConfig config = frontend.config();
    if (startup.majorVersion() != 3) {
      client.fatal(
          SqlState.FEATURE_NOT_SUPPORTED,
          "unsupported frontend protocol "
              + startup.majorVersion()
              + "."
              + startup.minorVersion()
              + ": server supports 3.0 to 3.0");
      return;
    }
    Map<String, String> parameters = new LinkedHashMap<>();
    List<String> unknownOptions = new ArrayList<>();
    startup
        .parameters()
        .forEach(
            (name, value) -> {
              if (name.startsWith("_pq_.")) {
                unknownOptions.add(name);
              } else {
                parameters.put(name, value);
              }
            });
    if (startup.minorVersion() != 0 || !unknownOptions.isEmpty()) {
      ctx.write(new NegotiateProtocolVersion(0, unknownOptions).encode(ctx.alloc()));
    }
    StartupMessage accepted = new StartupMessage(StartupMessage.V3_0, parameters);
    if (config.clientTls().mode() == ClientTlsMode.REQUIRE && !client.tls()) {
      client.fatal(
          SqlState.INVALID_AUTHORIZATION_SPECIFICATION, "TLS is required (tls.client.mode)");
      return;
    }
    String user = accepted.user();
    if (user == null || user.isEmpty()) {
      client.fatal(
          SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
          "no PostgreSQL user name specified in startup packet");
      return;
    }
    if (parameters.containsKey("replication") && !"false".equals(parameters.get("replication"))) {
      client.fatal(SqlState.FEATURE_NOT_SUPPORTED, "replication connections are not supported");
      return;
    }
    Database database = config.databases().get(accepted.database());
    if (database == null && AdminConsole.NAMES.contains(accepted.database())) {
      if (!config.auth().adminUsers().contains(user)
          && !config.auth().statsUsers().contains(user)) {
        if (config.auth().type() == ProxyConfig.AuthType.TRUST) {
          client.fatal(
              SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
              "user \"" + user + "\" is not in auth.admin_users or auth.stats_users");
          return;
        }
        client.notAdmin(true); // refused after a mock password exchange, as a wrong password is
      }
      // Secrets for admins come from the users file, or auth_query on the first database.
      Database first = config.databases().values().iterator().next();
      database =
          new Database(
              accepted.database(),
              first.dbname(),
              first.primary(),
              List.of(),
              null,
              null,
              null,
              0,
              ProxyConfig.Routing.DEFAULT);
      client.admin(true);
    }
    if (database == null) {
      client.fatal(
          SqlState.INVALID_CATALOG_NAME,
          "database \"" + accepted.database() + "\" does not exist in the proxy configuration");
      return;
    }
    if (frontend.loggedIn().get() >= config.limits().maxClientConnections()) {
      client.fatal(SqlState.TOO_MANY_CONNECTIONS, "sorry, too many clients already");
      return;
    }
    client.startup(accepted, database);
    ctx.pipeline()
        .replace("startup", "frames", new PgFrameDecoder(config.limits().maxMessageSize()));
    ctx.pipeline().replace(this, "auth", new ClientAuthHandler(frontend, client));
  }

  @Override
  public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
    ClientErrors.handle(client, cause);
  }
}
