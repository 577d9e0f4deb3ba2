package org.cryoprotect.proxy.config;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

/**
 * The whole configuration, immutable. Built only by {@link ConfigLoader}, which has validated every
 * value, so the rest of the proxy never re-checks it. Key names are in the example YAML file.
 */
public record ProxyConfig(
    Endpoint listen,
    Endpoint admin,
    Auth auth,
    Pool pool,
    Limits limits,
    ClientTls clientTls,
    ServerTls serverTls,
    Map<String, Database> databases) {

  public record Endpoint(String host, int port) {
    @Override
    public String toString() {
      return host + ":" + port;
    }
  }

  public enum AuthType {
    TRUST,
    MD5,
    SCRAM_SHA_256
  }

  /**
   * How clients prove who they are. Secrets come from {@code usersFile} first, then {@code
   * authQuery} run as {@code authUser} against the database being connected to.
   */
  public record Auth(
      AuthType type,
      Path usersFile,
      String authQuery,
      String authUser,
      String authPassword,
      List<String> adminUsers) {}

  public enum PoolMode {
    SESSION,
    TRANSACTION
  }

  public record Pool(PoolMode mode, int size) {}

  public record Limits(
      int maxClientConnections,
      int maxMessageSize,
      Duration clientLoginTimeout,
      Duration serverConnectTimeout,
      Duration shutdownTimeout) {}

  public enum ClientTlsMode {
    DISABLE,
    ALLOW,
    REQUIRE
  }

  public record ClientTls(ClientTlsMode mode, Path certFile, Path keyFile) {}

  public enum ServerTlsMode {
    DISABLE,
    PREFER,
    REQUIRE,
    VERIFY_CA,
    VERIFY_FULL
  }

  public record ServerTls(ServerTlsMode mode, Path caFile) {}

  /** A database clients connect to by {@code name}; {@code dbname} is its name on the server. */
  public record Database(
      String name,
      String dbname,
      Endpoint primary,
      List<Endpoint> replicas,
      String user,
      String password) {}
}
