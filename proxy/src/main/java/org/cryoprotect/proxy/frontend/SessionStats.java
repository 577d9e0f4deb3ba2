package org.cryoprotect.proxy.frontend;

import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.ServerPool;

/**
 * What one client session reports, to its pool's statistics (SHOW STATS) and to Prometheus: bytes
 * each way, and how long each query and transaction took, from the first client message after a
 * ReadyForQuery to the ReadyForQuery that ends it.
 */
final class SessionStats {
  private final ServerPool pool;
  private final ProxyMetrics metrics;
  private final String database;
  private long queryStart; // first client message since the last ReadyForQuery, or 0
  private long xactStart; // first client message since the last ReadyForQuery 'I', or 0

  SessionStats(ServerPool pool, ProxyMetrics metrics, String database) {
    this.pool = pool;
    this.metrics = metrics;
    this.database = database;
  }

  /** A client message went to a server: starts the clocks that are not running. */
  void received(int bytes) {
    pool.received(bytes);
    metrics.bytes(ProxyMetrics.IN, bytes);
    if (queryStart == 0 || xactStart == 0) { // one clock read per query, not per message
      long now = System.nanoTime();
      queryStart = queryStart == 0 ? now : queryStart;
      xactStart = xactStart == 0 ? now : xactStart;
    }
  }

  void sent(int bytes) {
    pool.sent(bytes);
    metrics.bytes(ProxyMetrics.OUT, bytes);
  }

  /**
   * A Query, Sync or FunctionCall was answered at {@code now} on {@code route}; the transaction
   * ended too when {@code idle}.
   */
  void answered(long now, boolean idle, String route) {
    if (queryStart != 0) {
      pool.query(now - queryStart);
      metrics.query(database, route, now - queryStart);
      queryStart = 0;
    }
    if (idle && xactStart != 0) {
      pool.transaction(now - xactStart);
      metrics.transaction(database, route, now - xactStart);
      xactStart = 0;
    }
  }
}
