package org.cryoprotect.proxy.admin;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import com.sun.net.httpserver.HttpServer;
import io.netty.util.concurrent.DefaultThreadFactory;
import io.prometheus.metrics.exporter.httpserver.MetricsHandler;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The admin HTTP endpoint: {@code /metrics} (Prometheus text or OpenMetrics, chosen by the Accept
 * header, as the Prometheus exporter does), {@code /health/live} and {@code /health/ready}. It runs
 * on the JDK's HTTP server with its own two threads, so a slow scrape or a stuck readiness check
 * never touches a Netty event loop, and the event loops never wait for it.
 */
public final class AdminHttpServer implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(AdminHttpServer.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String TEXT = "text/plain; charset=utf-8";

  private final HttpServer server;
  private final ExecutorService threads;
  private final Readiness readiness;
  private volatile boolean shuttingDown;

  private AdminHttpServer(HttpServer server, ExecutorService threads, Readiness readiness) {
    this.server = server;
    this.threads = threads;
    this.readiness = readiness;
  }

  /** Binds {@code endpoint} (port 0 picks a free port, see {@link #address}) and starts serving. */
  public static AdminHttpServer start(
      Endpoint endpoint, PrometheusRegistry registry, Readiness readiness) throws IOException {
    HttpServer server =
        HttpServer.create(new InetSocketAddress(endpoint.host(), endpoint.port()), 64);
    ExecutorService threads =
        Executors.newFixedThreadPool(2, new DefaultThreadFactory("cryoproxy-admin", true));
    server.setExecutor(threads);
    AdminHttpServer admin = new AdminHttpServer(server, threads, readiness);
    MetricsHandler metrics = new MetricsHandler(registry);
    server.createContext("/metrics", exact("/metrics", metrics));
    server.createContext("/health/live", exact("/health/live", admin::live));
    server.createContext("/health/ready", exact("/health/ready", admin::ready));
    server.createContext(
        "/", ex -> respond(ex, 404, TEXT, "try /metrics, /health/live, /health/ready\n"));
    server.start();
    log.info(
        "admin endpoint on http://{}:{}",
        admin.address().getHostString(),
        admin.address().getPort());
    return admin;
  }

  public InetSocketAddress address() {
    return server.getAddress();
  }

  /**
   * From now on {@code /health/ready} answers 503, so load balancers stop sending new clients while
   * the proxy drains the ones it has; {@code /health/live} and {@code /metrics} go on.
   */
  public void shuttingDown() {
    shuttingDown = true;
  }

  private void live(HttpExchange ex) throws IOException {
    respond(ex, 200, TEXT, "live\n");
  }

  private void ready(HttpExchange ex) throws IOException {
    Map<String, Object> body = new LinkedHashMap<>();
    boolean ready;
    try {
      Readiness.Status status = readiness.status();
      ready = status.ready() && !shuttingDown;
      body.put("status", shuttingDown ? "shutting down" : ready ? "ready" : "not ready");
      body.put("nodes", status.nodes());
    } catch (RuntimeException e) {
      ready = false;
      body.put("status", "not ready");
      body.put("error", String.valueOf(e.getMessage()));
      body.put("nodes", List.of());
    }
    respond(ex, ready ? 200 : 503, "application/json", JSON.writeValueAsString(body) + "\n");
  }

  /**
   * The JDK server matches contexts by path prefix; answer only the exact path, and only GET or
   * HEAD, so that a typo is a 404 rather than a scrape.
   */
  private static HttpHandler exact(String path, HttpHandler handler) {
    return ex -> {
      if (!ex.getRequestURI().getPath().equals(path)) {
        respond(ex, 404, TEXT, "not found\n");
      } else if (!ex.getRequestMethod().equals("GET") && !ex.getRequestMethod().equals("HEAD")) {
        ex.getResponseHeaders().set("Allow", "GET, HEAD");
        respond(ex, 405, TEXT, "method not allowed\n");
      } else {
        handler.handle(ex);
      }
    };
  }

  private static void respond(HttpExchange ex, int code, String contentType, String body)
      throws IOException {
    byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
    ex.getResponseHeaders().set("Content-Type", contentType);
    if (ex.getRequestMethod().equals("HEAD")) {
      ex.sendResponseHeaders(code, -1);
    } else {
      ex.sendResponseHeaders(code, bytes.length);
      try (OutputStream out = ex.getResponseBody()) {
        out.write(bytes);
      }
    }
    ex.close();
  }

  @Override
  public void close() {
    server.stop(0);
    threads.shutdownNow();
  }
}
