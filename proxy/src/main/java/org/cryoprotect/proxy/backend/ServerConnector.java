package org.cryoprotect.proxy.backend;

import io.netty.bootstrap.Bootstrap;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoop;
import io.netty.resolver.AddressResolverGroup;
import io.netty.resolver.dns.DnsAddressResolverGroup;
import io.netty.resolver.dns.DnsNameResolverBuilder;
import io.netty.resolver.dns.DnsServerAddressStreamProviders;
import io.netty.resolver.dns.SequentialDnsServerAddressStreamProvider;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.Promise;
import io.netty.util.concurrent.ScheduledFuture;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.Transport;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.frontend.CancelRequest;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;

/**
 * Opens server connections on the caller's event loop, so client and server of one session never
 * hop threads, and logs them in. The whole login (DNS, TCP, TLS, authentication) is bounded by one
 * timeout.
 *
 * <p>Host names are resolved by Netty's asynchronous DNS resolver on the event loop, never by the
 * JDK's blocking look-up: a slow name server for one database's host must not stall the loop that
 * serves every other client on it. It reads {@code /etc/hosts} and {@code /etc/resolv.conf}, or the
 * name servers the system property {@code cryoproxy.dns.servers} lists ({@code host:port,...}), and
 * caches answers for their TTL. Its sockets live on the event loops and close with them.
 */
public final class ServerConnector {
  private final Transport transport;
  private final ServerTlsContext tls;
  private final Duration timeout;
  private final AddressResolverGroup<InetSocketAddress> resolver;

  public ServerConnector(Transport transport, ServerTlsContext tls, Duration timeout) {
    this.transport = transport;
    this.tls = tls;
    this.timeout = timeout;
    this.resolver =
        resolver(transport, System.getProperty("cryoproxy.dns.servers", ""), timeout.toMillis());
  }

  private static AddressResolverGroup<InetSocketAddress> resolver(
      Transport transport, String servers, long timeoutMillis) {
    DnsNameResolverBuilder builder =
        new DnsNameResolverBuilder()
            .queryTimeoutMillis(timeoutMillis) // a look-up may take the whole login's time
            .datagramChannelType(transport.datagramChannel())
            .socketChannelType(transport.socketChannel()); // TCP when an answer is truncated
    List<InetSocketAddress> listed = new ArrayList<>();
    for (String server : servers.split(",")) {
      if (!server.isBlank()) {
        int colon = server.lastIndexOf(':');
        listed.add(
            new InetSocketAddress(
                server.substring(0, colon).trim(),
                Integer.parseInt(server.substring(colon + 1).trim())));
      }
    }
    builder.nameServerProvider(
        listed.isEmpty()
            ? DnsServerAddressStreamProviders.platformDefault()
            : new SequentialDnsServerAddressStreamProvider(listed));
    return new DnsAddressResolverGroup(builder);
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
            .resolver(resolver)
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
        .resolver(resolver)
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
