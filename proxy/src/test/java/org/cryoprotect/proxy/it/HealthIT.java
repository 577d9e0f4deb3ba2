package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.sql.Connection;
import java.sql.Statement;
import java.time.Duration;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.embedded.PgNode;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.testing.Exposition;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.junit.jupiter.api.Test;

/**
 * Control-plane health probes against a real primary and streaming replica: {@code /health/ready}
 * follows the primary, {@code /metrics} shows every node's state and the replica's lag.
 */
@PgTest(replicas = 1)
class HealthIT {
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Duration INTERVAL = Duration.ofMillis(500);
  private static final Duration TIMEOUT = Duration.ofSeconds(1); // health.timeout's default
  // A change is seen by the next probe: at most one interval away, and it may spend its whole
  // timeout finding out (HikariCP retries the connection until then); plus slack for a busy host.
  private static final Duration NOTICED = INTERVAL.plus(TIMEOUT).plusSeconds(1);
  // The very first probes also load and start HikariCP and pgJDBC.
  private static final Duration FIRST_PROBE = Duration.ofSeconds(15);

  private static RunningProxy start(PgCluster pg) throws Exception {
    PgNode primary = pg.primary();
    PgNode replica = pg.replica(0);
    return RunningProxy.start(
        "health: { interval: "
            + INTERVAL.toMillis()
            + "ms }\n"
            + "databases:\n"
            + "  app:\n"
            + "    dbname: postgres\n"
            + "    primary: { host: "
            + primary.host()
            + ", port: "
            + primary.port()
            + " }\n"
            + "    replicas: [ { host: "
            + replica.host()
            + ", port: "
            + replica.port()
            + " } ]\n");
  }

  private static String node(PgNode node) {
    return node.host() + ":" + node.port();
  }

  private static HttpResponse<String> get(RunningProxy proxy, String path) throws Exception {
    HttpRequest request =
        HttpRequest.newBuilder(proxy.adminUri(path)).timeout(Duration.ofSeconds(10)).build();
    return HTTP.send(request, HttpResponse.BodyHandlers.ofString());
  }

  private static Exposition metrics(RunningProxy proxy) throws Exception {
    HttpResponse<String> response = get(proxy, "/metrics");
    assertThat(response.statusCode()).isEqualTo(200);
    return Exposition.parse(response.body());
  }

  private static JsonNode ready(RunningProxy proxy) throws Exception {
    return JSON.readTree(get(proxy, "/health/ready").body());
  }

  /** The readiness body's entry for {@code node}. */
  private static JsonNode entry(JsonNode body, String node) {
    for (JsonNode n : body.path("nodes")) {
      if (n.path("node").asText().equals(node)) {
        return n;
      }
    }
    throw new AssertionError("no entry for " + node + " in " + body);
  }

  @Test
  void readinessFollowsThePrimaryWithPerNodeDetail(PgCluster pg) throws Exception {
    try (RunningProxy proxy = start(pg)) {
      await()
          .atMost(FIRST_PROBE)
          .untilAsserted(() -> assertThat(get(proxy, "/health/ready").statusCode()).isEqualTo(200));
      JsonNode ready = ready(proxy);
      assertThat(ready.path("status").asText()).isEqualTo("ready");
      assertThat(ready.path("nodes")).hasSize(2);
      JsonNode primary = entry(ready, node(pg.primary()));
      assertThat(primary.path("database").asText()).isEqualTo("app");
      assertThat(primary.path("role").asText()).isEqualTo("primary");
      assertThat(primary.path("up").asBoolean()).isTrue();
      assertThat(primary.path("detail").asText()).isEmpty();
      await()
          .atMost(FIRST_PROBE)
          .untilAsserted(
              () ->
                  assertThat(entry(ready(proxy), node(pg.replica(0))).path("up").asBoolean())
                      .isTrue());
      assertThat(entry(ready(proxy), node(pg.replica(0))).path("role").asText())
          .isEqualTo("replica");

      try {
        pg.primary().stop();
        await()
            .atMost(NOTICED)
            .pollInterval(Duration.ofMillis(50))
            .untilAsserted(
                () -> assertThat(get(proxy, "/health/ready").statusCode()).isEqualTo(503));
        JsonNode down = ready(proxy);
        assertThat(down.path("status").asText()).isEqualTo("not ready");
        JsonNode primaryDown = entry(down, node(pg.primary()));
        assertThat(primaryDown.path("up").asBoolean()).isFalse();
        // A few words, nothing of the server's own text (addresses, user names) for anyone.
        assertThat(primaryDown.path("detail").asText())
            .isIn("unreachable", "shutting down", "starting up or shutting down", "timed out");
        Endpoint primaryNode = new Endpoint(pg.primary().host(), pg.primary().port());
        assertThat(proxy.server().health().node("app", primaryNode))
            .hasValueSatisfying(h -> assertThat(h.up()).isFalse());
      } finally {
        pg.primary().start();
      }
      await()
          .atMost(NOTICED)
          .pollInterval(Duration.ofMillis(50))
          .untilAsserted(() -> assertThat(get(proxy, "/health/ready").statusCode()).isEqualTo(200));
      Exposition after = metrics(proxy);
      assertThat(
              after.sum("cryoproxy_probes_total", "node", node(pg.primary()), "result", "failed"))
          .isPositive();
      assertThat(after.value("cryoproxy_node_up", "node", node(pg.primary()), "role", "primary"))
          .isEqualTo(1);
    }
  }

  @Test
  void replicaStateAndLagAppearInMetrics(PgCluster pg) throws Exception {
    String replica = node(pg.replica(0));
    String primary = node(pg.primary());
    try (RunningProxy proxy = start(pg)) {
      await()
          .atMost(FIRST_PROBE)
          .untilAsserted(
              () -> {
                Exposition m = metrics(proxy);
                assertThat(m.value("cryoproxy_node_up", "node", replica, "role", "replica"))
                    .isEqualTo(1);
                assertThat(m.value("cryoproxy_node_up", "node", primary, "role", "primary"))
                    .isEqualTo(1);
                assertThat(m.sum("cryoproxy_probes_total", "node", replica, "result", "ok"))
                    .isPositive();
              });
      Exposition m = metrics(proxy);
      assertThat(m.value("cryoproxy_replica_lag_seconds", "node", replica)).isNotNegative();
      assertThat(m.value("cryoproxy_replica_lag_bytes", "node", replica)).isNotNegative();
      assertThat(m.has("cryoproxy_replica_lag_seconds", "node", primary)).isFalse();
      assertThat(m.value("cryoproxy_breaker_state", "node", replica)).isZero();

      // Delay replay on the replica: WAL it has received but not replayed is lag, in bytes and in
      // the age of the last commit it did replay (so first let it replay one).
      pg.primary().sql("CREATE TABLE IF NOT EXISTS health_it (x int)");
      pg.awaitReplication();
      try {
        pg.replica(0).sql("ALTER SYSTEM SET recovery_min_apply_delay = '5s'");
        pg.replica(0).sql("SELECT pg_reload_conf()");
        try (Connection c = pg.primary().connect();
            Statement st = c.createStatement()) {
          st.execute("SET synchronous_commit = on");
          st.execute("INSERT INTO health_it VALUES (1)");
        }
        await()
            .atMost(Duration.ofSeconds(5))
            .pollInterval(Duration.ofMillis(100))
            .untilAsserted(
                () -> {
                  Exposition lagging = metrics(proxy);
                  assertThat(lagging.value("cryoproxy_replica_lag_bytes", "node", replica))
                      .isPositive();
                  assertThat(lagging.value("cryoproxy_replica_lag_seconds", "node", replica))
                      .isPositive();
                });
      } finally {
        pg.replica(0).sql("ALTER SYSTEM RESET recovery_min_apply_delay");
        pg.replica(0).sql("SELECT pg_reload_conf()");
      }
      await()
          .atMost(Duration.ofSeconds(30))
          .untilAsserted(
              () -> {
                Exposition caughtUp = metrics(proxy);
                assertThat(caughtUp.value("cryoproxy_replica_lag_bytes", "node", replica)).isZero();
                assertThat(caughtUp.value("cryoproxy_replica_lag_seconds", "node", replica))
                    .isZero();
              });

      // A replica going down shows in its gauge; the proxy stays ready, reads have the primary.
      try {
        pg.replica(0).stop();
        await()
            .atMost(NOTICED)
            .pollInterval(Duration.ofMillis(50))
            .untilAsserted(
                () ->
                    assertThat(
                            metrics(proxy)
                                .value("cryoproxy_node_up", "node", replica, "role", "replica"))
                        .isZero());
        HttpResponse<String> ready = get(proxy, "/health/ready");
        assertThat(ready.statusCode()).isEqualTo(200);
        assertThat(entry(JSON.readTree(ready.body()), replica).path("up").asBoolean()).isFalse();
        assertThat(
                metrics(proxy).sum("cryoproxy_probes_total", "node", replica, "result", "failed"))
            .isPositive();
      } finally {
        pg.replica(0).start();
      }
      await()
          .atMost(NOTICED)
          .untilAsserted(
              () ->
                  assertThat(
                          metrics(proxy)
                              .value("cryoproxy_node_up", "node", replica, "role", "replica"))
                      .isEqualTo(1));
    }
  }
}
