package org.cryoprotect.proxy.metrics;

/**
 * One PostgreSQL node at one instant. {@code role} is {@code primary} or {@code replica}; {@code
 * breakerState} is {@link #CLOSED}, {@link #HALF_OPEN} or {@link #OPEN}; lag is only meaningful,
 * and only exported, for replicas.
 */
public record NodeStats(
    String node, String role, int breakerState, double lagSeconds, long lagBytes, boolean healthy) {
  public static final int CLOSED = 0;
  public static final int HALF_OPEN = 1;
  public static final int OPEN = 2;
}
