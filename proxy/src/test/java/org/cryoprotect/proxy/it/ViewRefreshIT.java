package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.Statement;
import java.time.Duration;
import java.util.List;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.junit.jupiter.api.Test;

/**
 * Materialized-view refresh by the control plane (refresh_views, sql/ V6): two proxy instances with
 * the same schedule refresh a view once per interval between them, never concurrently; a failing
 * refresh is counted and the view keeps its old rows.
 */
@PgTest
class ViewRefreshIT {

  @Test
  void twoInstancesRefreshOncePerIntervalAndAFailureKeepsTheOldRows(PgCluster pg) throws Exception {
    pg.createDatabase("mvapp");
    try (Connection c = pg.primary().connect("mvapp");
        Statement st = c.createStatement()) {
      for (String migration : List.of("V4__cache_invalidation.sql", "V6__view_refresh.sql")) {
        try (var in = getClass().getResourceAsStream("/sql/migrations/" + migration)) {
          st.execute(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        }
      }
      st.execute("CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL)");
      st.execute("INSERT INTO src SELECT i, i FROM generate_series(1, 100) i");
      st.execute("CREATE MATERIALIZED VIEW mv AS SELECT id, v FROM src");
      st.execute("CREATE UNIQUE INDEX mv_id ON mv (id)");
    }
    String yaml =
        RunningProxy.database("app", "mvapp", "127.0.0.1", pg.primary().port())
            + "refresh_views:\n  - { database: app, view: public.mv, every: 1s }\n";
    try (RunningProxy a = RunningProxy.start(yaml);
        RunningProxy b = RunningProxy.start(yaml)) {
      // Both instances run on the same 1 s schedule: between them, one refresh per interval.
      long startRefreshed = refreshed(a) + refreshed(b);
      long start = System.nanoTime();
      Thread.sleep(6_000);
      long seconds = (System.nanoTime() - start) / 1_000_000_000L;
      long done = refreshed(a) + refreshed(b) - startRefreshed;
      System.out.printf(
          "[ViewRefreshIT] two instances, every 1 s, %d s: %d refreshes (a %d, b %d); skipped as"
              + " fresh or busy: %d%n",
          seconds,
          done,
          refreshed(a),
          refreshed(b),
          count(a, "fresh") + count(b, "fresh") + count(a, "busy") + count(b, "busy"));
      assertThat(done).isBetween(seconds - 1, seconds + 1);
      assertThat(count(a, "failed") + count(b, "failed")).isZero();
      assertThat(metric(a, "cryoproxy_view_refresh_age_seconds", "view=\"public.mv\""))
          .isLessThan(2.5);
      // New rows reach the view at the next refresh.
      pg.primary().sql("mvapp", "INSERT INTO src VALUES (101, 101)");
      await()
          .atMost(Duration.ofSeconds(5))
          .until(
              () ->
                  pg.primary().sql("mvapp", "SELECT count(*) FROM mv").get(0).get(0).equals("101"));
      // Without its unique index the view cannot be refreshed CONCURRENTLY: every attempt fails,
      // is counted, and readers keep the old rows.
      pg.primary().sql("mvapp", "DROP INDEX mv_id; INSERT INTO src VALUES (102, 102)");
      await()
          .atMost(Duration.ofSeconds(10))
          .until(() -> count(a, "failed") + count(b, "failed") >= 2);
      assertThat(pg.primary().sql("mvapp", "SELECT count(*) FROM mv").get(0).get(0))
          .isEqualTo("101");
      Thread.sleep(1_500);
      assertThat(metric(a, "cryoproxy_view_refresh_age_seconds", "view=\"public.mv\""))
          .as("the age grows while refreshes fail")
          .isGreaterThan(1.5);
    }
  }

  static long refreshed(RunningProxy p) throws Exception {
    return count(p, "refreshed");
  }

  static long count(RunningProxy p, String result) throws Exception {
    return (long)
        metric(
            p, "cryoproxy_view_refreshes_total", "view=\"public.mv\"", "result=\"" + result + "\"");
  }

  /** The value of the series of {@code name} that has every one of {@code labels}; 0 if none. */
  static double metric(RunningProxy p, String name, String... labels) throws Exception {
    URI uri = p.adminUri("/metrics");
    String text = new String(uri.toURL().openStream().readAllBytes(), StandardCharsets.UTF_8);
    return text.lines()
        .filter(l -> l.startsWith(name + "{") && List.of(labels).stream().allMatch(l::contains))
        .mapToDouble(l -> Double.parseDouble(l.substring(l.lastIndexOf(' ') + 1)))
        .findFirst()
        .orElse(0);
  }
}
