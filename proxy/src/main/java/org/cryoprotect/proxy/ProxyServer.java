package org.cryoprotect.proxy;

import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.util.concurrent.DefaultThreadFactory;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.proxy.admin.AdminHttpServer;
import org.cryoprotect.proxy.audit.Audit;
import org.cryoprotect.proxy.auth.Revocations;
import org.cryoprotect.proxy.backend.ServerConnector;
import org.cryoprotect.proxy.backend.ServerTlsContext;
import org.cryoprotect.proxy.cache.InvalidationListener;
import org.cryoprotect.proxy.cache.ResultCache;
import org.cryoprotect.proxy.config.ConfigLoader;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.ClientTlsMode;
import org.cryoprotect.proxy.frontend.CancelRegistry;
import org.cryoprotect.proxy.frontend.ClientSecrets;
import org.cryoprotect.proxy.frontend.ClientStartupHandler;
import org.cryoprotect.proxy.frontend.Frontend;
import org.cryoprotect.proxy.health.HealthProbes;
import org.cryoprotect.proxy.metrics.NodeStats;
import org.cryoprotect.proxy.metrics.PrometheusMetrics;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.Pools;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.StartupDecoder;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.cryoprotect.proxy.routing.Router;
import org.cryoprotect.proxy.views.ViewRefresher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A running proxy: the listener, the event loops, the control-plane threads. {@link #shutdown}
 * stops accepting, lets sessions finish up to a deadline, then ends the rest with 57P01.
 */
public final class ProxyServer implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ProxyServer.class);

  private final ProxyConfig config;
  private final Transport transport;
  private final EventLoopGroup workers;
  private final ExecutorService controlPlane;
  private final Frontend frontend;
  private final Revocations revocations;
  private final Audit audit;
  private final ResultCache cache;
  private final List<InvalidationListener> cacheListeners = new ArrayList<>();
  private final ViewRefresher views;
  private Pools pools;
  private volatile Path configFile;
  private final Channel listener;
  private final PrometheusMetrics metrics = new PrometheusMetrics(version());
  private final AdminHttpServer admin; // null when the config has no admin endpoint
  private HealthProbes health;
  private Router router;
  private final CountDownLatch terminated = new CountDownLatch(1);

  private ProxyServer(ProxyConfig config) throws Exception {
    this.config = config;
    this.transport = Transport.best();
    this.workers =
        transport.newGroup(
            Integer.getInteger("cryoproxy.io.threads", defaultIoThreads()),
            new DefaultThreadFactory("cryoproxy-io"));
    this.controlPlane =
        Executors.newFixedThreadPool(2, new DefaultThreadFactory("cryoproxy-control", true));
    try {
      ChannelGroup clients = new DefaultChannelGroup("clients", GlobalEventExecutor.INSTANCE);
      ServerConnector connector =
          new ServerConnector(
              transport,
              new ServerTlsContext(config.serverTls()),
              config.limits().serverConnectTimeout());
      this.health = new HealthProbes(config, metrics);
      this.router = new Router(config, health, metrics);
      this.pools = new Pools(config, connector, router, workers.next());
      this.revocations =
          config.auth().jwt() == null
              ? Revocations.none()
              : new Revocations(
                      HealthProbes.revocationSources(config), config.auth().jwt().revocationPoll())
                  .start();
      metrics.registerRevocations(revocations::size, revocations::ageSeconds);
      this.audit = config.audit() == null ? Audit.off() : startAudit(config);
      this.cache = startCache(config);
      this.views =
          new ViewRefresher(
                  config.refreshViews(),
                  name ->
                      HealthProbes.controlDataSource(
                          config, config.databases().get(name), "view-refresh"),
                  metrics)
              .start();
      router.onNodeFailure(
          guard -> pools.nodeFailed(guard.node(), guard.unavailable(), false),
          node -> pools.nodeFailed(node, router.guard(node).unavailable(), true));
      this.frontend =
          new Frontend(
              clientTls(config),
              connector,
              new CancelRegistry(),
              new ClientSecrets(config.auth(), config.serverTls(), controlPlane, revocations),
              pools,
              metrics,
              clients,
              new AtomicInteger(),
              new Frontend.AdminActions() {
                @Override
                public CompletableFuture<String> reload() {
                  return CompletableFuture.supplyAsync(
                      () -> {
                        try {
                          return ProxyServer.this.reload();
                        } catch (Exception e) {
                          throw new CompletionException(e);
                        }
                      },
                      controlPlane);
                }

                @Override
                public void shutdown() {
                  Thread t =
                      new Thread(
                          () -> ProxyServer.this.shutdown(config.limits().shutdownTimeout()),
                          "cryoproxy-admin-shutdown");
                  t.setDaemon(true);
                  t.start();
                }
              },
              audit,
              cache);
      this.listener =
          new ServerBootstrap()
              // Accepting on an event loop of the workers: a connection accepted there is
              // registered there without a hand-over to another thread.
              .group(workers, workers)
              .channel(transport.serverChannel())
              .option(ChannelOption.SO_BACKLOG, 4096)
              .childOption(ChannelOption.TCP_NODELAY, true)
              .childOption(ChannelOption.SO_KEEPALIVE, true)
              .childOption(ChannelOption.AUTO_READ, false)
              .childHandler(
                  new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel ch) {
                      clients.add(ch);
                      ch.pipeline()
                          .addLast("startup", new StartupDecoder())
                          .addLast("phase", new ClientStartupHandler(frontend));
                    }
                  })
              .bind(config.listen().host(), config.listen().port())
              .sync()
              .channel();
      metrics.registerPools(
          () ->
              pools.all().stream().map(org.cryoprotect.proxy.pool.ServerPool::poolStats).toList());
      metrics.registerPreparedStatements(pools::preparedCount);
      metrics.initialiseNodes(health.nodeStats().stream().map(NodeStats::node).toList());
      health.start();
      metrics.registerNodes(() -> health.nodeStats(router::breakerState));
      this.admin =
          config.admin() == null
              ? null
              : AdminHttpServer.start(config.admin(), metrics.registry(), health);
    } catch (Exception e) {
      releaseResources();
      throw e;
    }
    log.info(
        "listening on {} ({} transport, TLS by {}, {} databases)",
        address(),
        transport.name(),
        SslContext.defaultServerProvider(),
        config.databases().size());
  }

  public static ProxyServer start(ProxyConfig config) throws Exception {
    return new ProxyServer(config);
  }

  /** Starts from a file, which RELOAD and SIGHUP read again. */
  public static ProxyServer start(Path configFile) throws Exception {
    ProxyServer server = new ProxyServer(ConfigLoader.load(configFile));
    server.configFile = configFile;
    return server;
  }

  /**
   * Re-reads the configuration file and applies what can change without dropping clients: pool
   * limits and modes, databases, users. The listener, TLS and authentication keep their values
   * until a restart; a change there is reported, not applied.
   */
  public synchronized String reload() throws Exception {
    if (configFile == null) {
      throw new IllegalStateException("the proxy was not started from a file");
    }
    ProxyConfig next = ConfigLoader.load(configFile);
    ProxyConfig now = pools.config();
    List<String> ignored = new ArrayList<>();
    if (!next.listen().equals(now.listen())) {
      ignored.add("listen");
    }
    if (!next.admin().equals(now.admin())) {
      ignored.add("admin");
    }
    if (!next.auth().equals(now.auth())) {
      ignored.add("auth");
    }
    if (!next.clientTls().equals(now.clientTls()) || !next.serverTls().equals(now.serverTls())) {
      ignored.add("tls");
    }
    pools.reconfigure(next);
    router.reconfigure(next);
    health.reconfigure(next);
    metrics.initialiseNodes(health.nodeStats().stream().map(NodeStats::node).toList());
    String result =
        "configuration reloaded from "
            + configFile
            + (ignored.isEmpty() ? "" : "; restart needed for " + String.join(", ", ignored));
    log.info(result);
    return result;
  }

  /**
   * The result cache and, for each database, the LISTEN connection its invalidations arrive on (the
   * health probes' login to the primary). Cache settings are read at start only.
   */
  private ResultCache startCache(ProxyConfig config) {
    if (!config.cache().enabled()) {
      return ResultCache.off();
    }
    ResultCache started =
        new ResultCache(
            config.cache(),
            metrics,
            name -> router.volatility(pools.config().databases().get(name)),
            health::controlConnection);
    metrics.registerCache(started::entryCount, started::bytes);
    for (ProxyConfig.Database db : config.databases().values()) {
      var source = HealthProbes.controlDataSource(config, db, "cache-listener");
      cacheListeners.add(
          new InvalidationListener(started, db.name(), source, config.cache().invalidationChannel())
              .start());
    }
    return started;
  }

  /**
   * The audit trail: records of a database go to its primary, as {@code audit.user} or else the
   * health probes' login, looked up in the configuration in force when the writer first needs it.
   */
  private Audit startAudit(ProxyConfig config) throws java.io.IOException {
    ProxyConfig.Audit settings = config.audit();
    return Audit.start(
        settings,
        name -> {
          ProxyConfig current = pools.config();
          ProxyConfig.Database db = current.databases().get(name);
          if (db == null) {
            return null;
          }
          var ds = HealthProbes.controlDataSource(current, db, "audit");
          if (settings.user() != null) {
            ds.setUser(settings.user());
            ds.setPassword(settings.password());
          }
          return ds;
        },
        metrics);
  }

  private static SslContext clientTls(ProxyConfig config) throws Exception {
    if (config.clientTls().mode() == ClientTlsMode.DISABLE) {
      return null;
    }
    return SslContextBuilder.forServer(
            config.clientTls().certFile().toFile(), config.clientTls().keyFile().toFile())
        .protocols("TLSv1.3", "TLSv1.2")
        .build();
  }

  public InetSocketAddress address() {
    return (InetSocketAddress) listener.localAddress();
  }

  /** Where {@code /metrics} and {@code /health/*} are served, or null without an admin endpoint. */
  public InetSocketAddress adminAddress() {
    return admin == null ? null : admin.address();
  }

  /** The metrics every part of the proxy reports to. */
  public ProxyMetrics metrics() {
    return metrics;
  }

  private static String version() {
    String version = ProxyServer.class.getPackage().getImplementationVersion();
    return version == null ? "development" : version;
  }

  /** The configuration now in force (RELOAD replaces it). */
  public ProxyConfig config() {
    return pools.config();
  }

  /** Clients that completed login and are connected now. */
  public int clientCount() {
    return frontend.loggedIn().get();
  }

  public void shutdown(Duration timeout) {
    if (terminated.getCount() == 0) {
      return;
    }
    log.info(
        "shutting down: waiting up to {} ms for {} clients", timeout.toMillis(), clientCount());
    if (admin != null) {
      admin.shuttingDown();
    }
    listener.close().syncUninterruptibly();
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!frontend.clients().isEmpty() && System.nanoTime() < deadline) {
      try {
        Thread.sleep(50);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    for (Channel client : frontend.clients()) {
      ByteBuf goodbye =
          ErrorResponse.of(
                  Severity.FATAL,
                  SqlState.ADMIN_SHUTDOWN,
                  "terminating connection due to proxy shutdown")
              .encode(client.alloc());
      client.writeAndFlush(goodbye).addListener(ChannelFutureListener.CLOSE);
    }
    frontend.clients().newCloseFuture().awaitUninterruptibly(2, TimeUnit.SECONDS);
    releaseResources();
    frontend.secrets().close();
    revocations.close();
    audit.close();
    cacheListeners.forEach(InvalidationListener::close);
    views.close();
    cache.close();
    terminated.countDown();
    log.info("shut down");
  }

  /** The control-plane health probes of every node. */
  public HealthProbes health() {
    return health;
  }

  /** The server pools, for the admin console and metrics. */
  public Pools pools() {
    return pools;
  }

  private void releaseResources() {
    if (health != null) {
      health.close();
    }
    if (router != null) {
      router.close();
    }
    if (pools != null) {
      pools.close();
    }
    if (admin != null) {
      admin.close();
    }
    workers.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
    controlPlane.shutdownNow();
  }

  /**
   * Half the cores, at least one. A sidecar shares its cores with the application and the load it
   * proxies; a client and its server connection on different event loops cost a thread hand-over
   * per message burst. Measured on 2 cores (bench/README.md): one loop used 30 % less CPU per
   * transaction than two and ran pgbench -S 20 % faster.
   */
  static int defaultIoThreads() {
    return Math.max(1, Runtime.getRuntime().availableProcessors() / 2);
  }

  public void awaitTermination() throws InterruptedException {
    terminated.await();
  }

  /** The result cache (off unless {@code cache.enabled}). */
  public ResultCache cache() {
    return cache;
  }

  @Override
  public void close() {
    shutdown(Duration.ZERO);
  }
}
