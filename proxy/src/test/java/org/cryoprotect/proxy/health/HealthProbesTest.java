package org.cryoprotect.proxy.health;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.tuple;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.cryoprotect.proxy.admin.Readiness;
import org.cryoprotect.proxy.config.ConfigLoader;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.health.NodeHealth.Role;
import org.cryoprotect.proxy.health.NodeProbe.Target;
import org.cryoprotect.proxy.metrics.NodeStats;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What the probes report without a server: configuration, logins, and the state before probing. */
class HealthProbesTest {
  @TempDir Path dir;

  private ProxyConfig load(String yaml) throws Exception {
    Path file = dir.resolve("cryoproxy.yaml");
    Files.writeString(file, yaml);
    return ConfigLoader.load(file, Map.of());
  }

  private static final String TWO_DATABASES =
      """
      databases:
        app:
          primary: { host: 10.0.0.1 }
          replicas: [ { host: 10.0.0.2 } ]
          user: app_owner
          password: app_secret
        reports:
          dbname: rep
          primary: { host: 10.0.0.1 }
      """;

  private static Target target(ProxyConfig config, String db) {
    Database database = config.databases().get(db);
    return HealthProbes.target(config, database, database.primary(), Role.PRIMARY);
  }

  @Test
  void probesLogInAsTheDatabaseUserElseTheAuthUserElsePostgres() throws Exception {
    ProxyConfig plain = load(TWO_DATABASES);
    assertThat(target(plain, "app").user()).isEqualTo("app_owner");
    assertThat(target(plain, "app").password()).isEqualTo("app_secret");
    assertThat(target(plain, "reports").user()).isEqualTo("postgres");
    assertThat(target(plain, "reports").password()).isNull();
    assertThat(target(plain, "reports").dbname()).isEqualTo("rep");

    ProxyConfig withAuthUser =
        load(
            TWO_DATABASES
                + "auth: { auth_query: 'SELECT u, p FROM t WHERE u = $1', auth_user: lookup,"
                + " auth_password: lookup_secret }\n");
    assertThat(target(withAuthUser, "app").user()).isEqualTo("app_owner");
    assertThat(target(withAuthUser, "reports").user()).isEqualTo("lookup");
    assertThat(target(withAuthUser, "reports").password()).isEqualTo("lookup_secret");

    ProxyConfig withHealthUser = load(TWO_DATABASES + "health: { user: probe }\n");
    assertThat(target(withHealthUser, "app").user()).isEqualTo("probe");
    assertThat(target(withHealthUser, "app").password()).isNull();
    ProxyConfig withHealthPassword = load(TWO_DATABASES + "health: { password: pw }\n");
    assertThat(target(withHealthPassword, "reports").user()).isEqualTo("postgres");
    assertThat(target(withHealthPassword, "app").password()).isEqualTo("pw");
    assertThat(target(withHealthPassword, "app").toString()).doesNotContain("pw");
  }

  @Test
  void beforeTheFirstProbeNothingIsReadyAndEveryNodeIsListedDown() throws Exception {
    try (HealthProbes health = new HealthProbes(load(TWO_DATABASES), ProxyMetrics.NONE)) {
      Readiness.Status status = health.status();
      assertThat(status.ready()).isFalse();
      assertThat(status.nodes())
          .extracting(
              Readiness.NodeStatus::database,
              Readiness.NodeStatus::node,
              Readiness.NodeStatus::role,
              Readiness.NodeStatus::up,
              Readiness.NodeStatus::detail)
          .containsExactly(
              tuple("app", "10.0.0.1:5432", "primary", false, "not probed yet"),
              tuple("app", "10.0.0.2:5432", "replica", false, "not probed yet"),
              tuple("reports", "10.0.0.1:5432", "primary", false, "not probed yet"));

      // The node shared by both databases is one gauge series.
      assertThat(health.nodeStats())
          .containsExactly(
              new NodeStats("10.0.0.1:5432", "primary", NodeStats.CLOSED, 0, 0, false),
              new NodeStats("10.0.0.2:5432", "replica", NodeStats.CLOSED, 0, 0, false));
    }
  }

  @Test
  void reloadKeepsUnchangedProbesAndDropsRemovedOnes() throws Exception {
    try (HealthProbes health = new HealthProbes(load(TWO_DATABASES), ProxyMetrics.NONE)) {
      health.reconfigure(
          load(
              """
              databases:
                app:
                  primary: { host: 10.0.0.1 }
                  user: app_owner
                  password: app_secret
                other:
                  primary: { host: 10.0.0.9 }
              """));
      assertThat(health.nodes())
          .extracting(h -> h.database() + "@" + h.node())
          .containsExactly("app@10.0.0.1:5432", "other@10.0.0.9:5432");
    }
  }
}
