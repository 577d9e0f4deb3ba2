package org.cryoprotect.bench;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.UnpooledByteBufAllocator;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.protocol.frontend.Query;
import org.cryoprotect.proxy.sql.ReadClassifier;
import org.cryoprotect.proxy.sql.SqlScan;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What the proxy reads of each simple query on the hot path: the routing classification (once per
 * transaction on databases with replicas) and the session-state scan (every Query message).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class ClassifyBenchmark {
  /** pgbench -S, a TPC-B update, and a 1 KiB report query with comments, strings and casts. */
  @Param({"pgbench_select", "tpcb_update", "report"})
  public String query;

  private String sql;
  private ByteBuf frame; // the same text as a Query message, in direct memory like a socket read

  @org.openjdk.jmh.annotations.Setup
  public void setUp() {
    sql =
        switch (query) {
          case "pgbench_select" -> "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
          case "tpcb_update" ->
              "UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 48213;";
          default -> report();
        };
    frame = Query.encode(UnpooledByteBufAllocator.DEFAULT, sql);
  }

  @org.openjdk.jmh.annotations.TearDown
  public void tearDown() {
    frame.release();
  }

  private static String report() {
    StringBuilder b =
        new StringBuilder(
            "/* dashboard: weekly */ WITH recent AS (SELECT o.id, o.total::numeric(12,2) AS t,"
                + " date_trunc('week', o.created_at) AS wk FROM orders o WHERE o.note NOT LIKE"
                + " '%for update%' AND o.created_at > now() - interval '90 days')"
                + " SELECT wk, count(*), sum(t), coalesce(max(t), 0) FROM recent GROUP BY wk");
    while (b.length() < 1024) {
      b.append(" -- padding comment with 'quotes' and $$dollars$$\n");
    }
    return b.append(" ORDER BY wk").toString();
  }

  @Benchmark
  public ReadClassifier.Classification readClassifier() {
    return ReadClassifier.classify(sql);
  }

  @Benchmark
  public SqlScan.Effects sessionScan() {
    return SqlScan.scan(sql);
  }

  /**
   * A Query message's text decoded to a String, then scanned statement by statement: what the
   * messages the byte check does not pass cost (about what every message cost before 2026-12-01).
   */
  @Benchmark
  public SqlScan.Effects sessionScanDecoded() {
    return SqlScan.scan(Query.textOrNull(frame));
  }

  /** The hot path now: plain statements judged from the bytes; others decoded and scanned. */
  @Benchmark
  public SqlScan.Effects sessionScanBytes() {
    return SqlScan.isPlainQuery(frame) ? null : SqlScan.scan(Query.textOrNull(frame));
  }
}
