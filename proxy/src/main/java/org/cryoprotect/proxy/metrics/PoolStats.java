package org.cryoprotect.proxy.metrics;

/**
 * One pool at one instant, in PgBouncer's {@code SHOW POOLS} vocabulary: clients active (linked to
 * a server connection), waiting (for one) and idle; server connections active (linked to a client),
 * idle (ready for reuse), used (released, to be checked before reuse) and logging in. {@code
 * poolSize} is the configured maximum of server connections; {@code maxWaitMicros} is how long the
 * oldest waiting client has waited.
 */
public record PoolStats(
    String database,
    String user,
    String node,
    int clActive,
    int clWaiting,
    int clIdle,
    int svActive,
    int svIdle,
    int svUsed,
    int svLogin,
    int poolSize,
    long maxWaitMicros) {}
