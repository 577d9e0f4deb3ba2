package org.cryoprotect.bench;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.channel.embedded.EmbeddedChannel;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.protocol.PgFrameDecoder;
import org.cryoprotect.proxy.protocol.frontend.Query;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Framing a read burst: 64 Query messages arrive in one buffer and leave the decoder as 64 retained
 * slices (no copy); then the text of one, as the session reads it for its scans.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class FrameBenchmark {
  static final int FRAMES = 64;

  private EmbeddedChannel channel;
  private ByteBuf burst;
  private ByteBuf one;

  @Setup
  public void setUp() {
    channel = new EmbeddedChannel(new PgFrameDecoder(64 << 20));
    burst = PooledByteBufAllocator.DEFAULT.directBuffer();
    for (int i = 0; i < FRAMES; i++) {
      ByteBuf q =
          Query.encode(
              PooledByteBufAllocator.DEFAULT,
              "SELECT abalance FROM pgbench_accounts WHERE aid = " + (1000 + i) + ";");
      burst.writeBytes(q);
      q.release();
    }
    one =
        Query.encode(
            PooledByteBufAllocator.DEFAULT,
            "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
  }

  @TearDown
  public void tearDown() {
    burst.release();
    one.release();
    channel.finishAndReleaseAll();
  }

  /** Per frame: the decoder's share of a 64-message read. */
  @Benchmark
  @OperationsPerInvocation(FRAMES)
  public int decodeBurst() {
    channel.writeInbound(burst.retainedDuplicate());
    int n = 0;
    ByteBuf frame;
    while ((frame = channel.readInbound()) != null) {
      n += frame.readableBytes();
      frame.release();
    }
    return n;
  }

  @Benchmark
  public String queryText() {
    return Query.textOrNull(one);
  }
}
