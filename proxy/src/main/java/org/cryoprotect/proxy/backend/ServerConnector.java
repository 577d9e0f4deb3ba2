package org.cryoprotect.proxy.backend;

import io.netty.bootstrap.Bootstrap;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoop;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.Promise;
import io.netty.util.concurrent.ScheduledFuture;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.Transport;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.frontend.CancelRequest;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;

/**
 * Opens server connections on the caller's event loop, so client and server of one session never
 * hop threads, and logs them in. The whole login (TCP, TLS, authentication) is bounded by one
 * timeout.
 */
public final class ServerConnector {
  private final Transport transport;
  private final ServerTlsContext tls;
  private final Duration timeout;

  public ServerConnector(Transport transport, ServerTlsContext tls, Duration timeout) {
    this.transport = transport;
    this.tls = tls;
    this.timeout = timeout;
  }

  public Future<ServerConnection> connect(
      EventLoop loop, Endpoint node, StartupMessage startup, ServerCredentials credentials) {
    Promise<ServerConnection> promise = loop.newPromise();
    Bootstrap bootstrap =
        new Bootstrap()
            .group(loop)
            .channel(transport.socketChannel())
            .option(ChannelOption.TCP_NODELAY, true)
            .option(ChannelOption.SO_KEEPALIVE, true)
            .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) timeout.toMillis())
            .handler(new ServerLoginHandler(promise, node, startup, credentials, tls));
    ChannelFuture connect = bootstrap.connect(node.host(), node.port());
    connect.addListener(
        f -> {
          if (!f.isSuccess()) {
            promise.tryFailure(
                new ServerException(
                    SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                    "cannot connect to server " + node + ": " + f.cause().getMessage()));
          }
        });
    ScheduledFuture<?> deadline =
        loop.schedule(
            () -> {
              if (promise.tryFailure(
                  new ServerException(
                      SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                      "login to server "
                          + node
                          + " timed out after "
                          + timeout.toMillis()
                          + " ms"))) {
                connect.channel().close();
              }
            },
            timeout.toMillis(),
            TimeUnit.MILLISECONDS);
    promise.addListener(f -> deadline.cancel(false));
    return promise;
  }

  /**
   * Sends a CancelRequest for a server's own key on a fresh connection, as PostgreSQL requires. The
   * server answers nothing and closes the connection once it has signalled the backend: the
   * returned future completes then (or after the connect timeout, or on failure), which is when the
   * backend can no longer be hit by this cancel and may serve another client.
   */
  public Future<Void> cancel(EventLoop loop, Endpoint node, CancelRequest request) {
    Promise<Void> done = loop.newPromise();
    new Bootstrap()
        .group(loop)
        .channel(transport.socketChannel())
        .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) timeout.toMillis())
        .handler(new io.netty.channel.ChannelInboundHandlerAdapter())
        .connect(node.host(), node.port())
        .addListener(
            (ChannelFuture f) -> {
              if (!f.isSuccess()) {
                done.trySuccess(null);
                return;
              }
              f.channel().closeFuture().addListener(c -> done.trySuccess(null));
              f.channel().writeAndFlush(request.encode(f.channel().alloc()));
              ScheduledFuture<?> giveUp =
                  loop.schedule(
                      () -> f.channel().close(), timeout.toMillis(), TimeUnit.MILLISECONDS);
              done.addListener(d -> giveUp.cancel(false));
            });
    return done;
  }
}
