package org.cryoprotect.proxy.views;

import java.lang.management.ManagementFactory;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Timestamp;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import javax.sql.DataSource;
import org.cryoprotect.proxy.config.ProxyConfig.RefreshView;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.metrics.ViewStats;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Refreshes the configured materialized views (config {@code refresh_views}) on a thread of the
 * control plane: every {@code every}, {@code cryoproxy.refresh_view} (sql/ V6) on the database's
 * primary, which lets one proxy instance at a time in (an advisory lock) and skips a view another
 * instance refreshed less than half an interval ago. A failing refresh is counted and logged; the
 * view keeps its old rows (REFRESH ... CONCURRENTLY either completes or changes nothing).
 */
public final class ViewRefresher implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ViewRefresher.class);
  private static final String REFRESH =
      "SELECT cryoproxy.refresh_view(?::regclass, ?::interval, ?)";
  private static final String REFRESHED_AT = "SELECT cryoproxy.view_refreshed_at(?::regclass)";

  private final ScheduledExecutorService timer;
  private final List<Job> jobs = new ArrayList<>();
  private final ProxyMetrics metrics;
  private final String instance = ManagementFactory.getRuntimeMXBean().getName();
  private final long startedMillis = System.currentTimeMillis();

  private final class Job {
    final RefreshView view;
    final DataSource source;
    volatile long refreshedAtMillis; // by any instance; 0: not known yet

    Job(RefreshView view, DataSource source) {
      this.view = view;
      this.source = source;
    }

    void run() {
      long start = System.nanoTime();
      String result;
      try (Connection c = source.getConnection()) {
        try (PreparedStatement st = c.prepareStatement(REFRESH)) {
          st.setString(1, view.view());
          st.setString(2, Math.max(1, view.every().toMillis() / 2) + " milliseconds");
          st.setString(3, instance);
          try (ResultSet rs = st.executeQuery()) {
            rs.next();
            result = rs.getString(1);
          }
        }
        try (PreparedStatement st = c.prepareStatement(REFRESHED_AT)) {
          st.setString(1, view.view());
          try (ResultSet rs = st.executeQuery()) {
            rs.next();
            Timestamp at = rs.getTimestamp(1);
            refreshedAtMillis = at == null ? 0 : at.getTime();
          }
        }
      } catch (Exception e) {
        result = "failed";
        log.warn(
            "refresh of {} in database {} failed: {}",
            view.view(),
            view.database(),
            e.getMessage());
      }
      metrics.viewRefresh(view.view(), result, System.nanoTime() - start);
    }

    ViewStats stats() {
      long since = refreshedAtMillis == 0 ? startedMillis : refreshedAtMillis;
      return new ViewStats(
          view.view(),
          Math.max(0, System.currentTimeMillis() - since) / 1000.0,
          view.every().toMillis() / 1000.0);
    }
  }

  /** {@code sources} gives the control-plane login to a proxy database's primary. */
  public ViewRefresher(
      List<RefreshView> views, Function<String, DataSource> sources, ProxyMetrics metrics) {
    this.metrics = metrics;
    this.timer =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread t = new Thread(r, "cryoproxy-view-refresh");
              t.setDaemon(true);
              return t;
            });
    for (RefreshView v : views) {
      jobs.add(new Job(v, sources.apply(v.database())));
    }
    metrics.registerViews(() -> jobs.stream().map(Job::stats).toList());
  }

  public ViewRefresher start() {
    for (Job job : jobs) {
      long every = job.view.every().toMillis();
      timer.scheduleAtFixedRate(job::run, 0, every, TimeUnit.MILLISECONDS);
    }
    return this;
  }

  /** How long a refresh may still take when the proxy stops. */
  static final Duration STOP_WAIT = Duration.ofSeconds(2);

  @Override
  public void close() {
    timer.shutdownNow();
    try {
      timer.awaitTermination(STOP_WAIT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
