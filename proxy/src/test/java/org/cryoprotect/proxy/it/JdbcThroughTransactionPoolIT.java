package org.cryoprotect.proxy.it;

/**
 * The whole pgJDBC suite in transaction mode over a pool smaller than the number of connections
 * some tests open: prepared statements, LISTEN (pinned), COPY, cancel and timeouts must all behave
 * as on a direct connection.
 */
class JdbcThroughTransactionPoolIT extends JdbcThroughProxyIT {
  @Override
  String poolYaml() {
    return "pool: { mode: transaction, size: 3, server_check_delay: 0s }\n";
  }
}
