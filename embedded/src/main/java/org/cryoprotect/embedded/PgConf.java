package org.cryoprotect.embedded;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/** The configuration files the harness writes: shared postgresql.conf lines, per-node, pg_hba. */
final class PgConf {

  /** Included last by postgresql.conf, so a node's own settings override the shared ones. */
  static final String NODE_CONF = "cryoproxy-node.conf";

  private PgConf() {}

  /** Appended to the primary's postgresql.conf before replicas are copied from it. */
  static String shared(PgCluster.Builder options, Path rootDir, Path tlsDir) {
    Map<String, String> conf = new LinkedHashMap<>();
    conf.put("listen_addresses", PgNode.HOST);
    conf.put("unix_socket_directories", rootDir.toString());
    // Later tests open hundreds of connections through and around the proxy.
    conf.put("max_connections", "300");
    conf.put("shared_buffers", "32MB");
    // Durability is worthless for a throwaway cluster and costs seconds per test class.
    conf.put("fsync", "off");
    conf.put("synchronous_commit", "off");
    conf.put("wal_level", "replica");
    conf.put("max_wal_senders", "10");
    conf.put("hot_standby", "on");
    // Default 5s: a replica whose primary was restarted would idle that long before reconnecting.
    conf.put("wal_retrieve_retry_interval", "500ms");
    if (options.replicas > 0) {
      // Replicas copied from the primary need every WAL segment since initdb until they connect.
      conf.put("wal_keep_size", "256MB");
    }
    conf.put("password_encryption", passwordEncryption(options.auth));
    conf.put("logging_collector", "off");
    conf.put("log_line_prefix", "%m [%p] %q%a %u@%d ");
    if (tlsDir != null) {
      conf.put("ssl", "on");
      conf.put("ssl_cert_file", tlsDir.resolve("server.crt").toString());
      conf.put("ssl_key_file", tlsDir.resolve("server.key").toString());
      conf.put("ssl_ca_file", tlsDir.resolve("ca.crt").toString());
    }
    conf.putAll(options.settings);
    StringBuilder out = new StringBuilder("\n# ---- CryoProxy test harness ----\n");
    conf.forEach((k, v) -> out.append(k).append(" = ").append(quote(v)).append('\n'));
    // A relative include resolves against the data directory, so each copy finds its own file.
    out.append("include '").append(NODE_CONF).append("'\n");
    return out.toString();
  }

  /** Port and, for replicas, upstream: the only settings that differ between nodes. */
  static String node(String name, int port, PgNode upstream) {
    StringBuilder out = new StringBuilder();
    out.append("port = ").append(port).append('\n');
    out.append("cluster_name = ").append(quote("cryoproxy-" + name)).append('\n');
    if (upstream != null) {
      String conninfo =
          String.format(
              "host=%s port=%d user=%s password=%s application_name=%s",
              upstream.host(),
              upstream.port(),
              PgCluster.SUPERUSER,
              PgCluster.SUPERUSER_PASSWORD,
              name);
      out.append("primary_conninfo = ").append(quote(conninfo)).append('\n');
    }
    return out.toString();
  }

  static String hba(PgCluster.Builder options) {
    String host = options.requireTls ? "hostssl" : "host";
    // Local (unix socket) connections stay trusted: only TCP is what tests exercise.
    return String.format(
        "local all all trust%n"
            + "local replication all trust%n"
            + "%1$s all all 127.0.0.1/32 %2$s%n"
            + "%1$s replication all 127.0.0.1/32 %2$s%n",
        host, options.auth);
  }

  /** Roles created by the harness store what the auth method can verify; SCRAM where possible. */
  static String passwordEncryption(String auth) {
    return "md5".equals(auth) ? "md5" : "scram-sha-256";
  }

  /** A single-quoted literal, valid both in SQL and in postgresql.conf. */
  static String quote(String value) {
    return "'" + value.replace("'", "''") + "'";
  }

  static String quoteIdent(String name) {
    return "\"" + name.replace("\"", "\"\"") + "\"";
  }
}
