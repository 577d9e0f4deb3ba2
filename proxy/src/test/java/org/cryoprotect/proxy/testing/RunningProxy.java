package org.cryoprotect.proxy.testing;

import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.time.Duration;
import java.util.Map;
import java.util.Properties;
import org.cryoprotect.proxy.ProxyServer;
import org.cryoprotect.proxy.config.ConfigLoader;

/** An in-process proxy started from YAML text, on an ephemeral port. */
public final class RunningProxy implements AutoCloseable {
  private static final String ADMIN = "admin: { host: 127.0.0.1, port: 0 }\n";

  private final ProxyServer server;
  private final Path dir;

  private RunningProxy(ProxyServer server, Path dir) {
    this.server = server;
    this.dir = dir;
  }

  /**
   * {@code yaml} should leave {@code listen} out (an ephemeral loopback port is used, unless the
   * test is about where the proxy listens; keep {@code port: 0} then); {@code admin} too, unless
   * the test is about it: the admin endpoint also gets an ephemeral port, so that tests never fight
   * over the default 9187.
   */
  public static RunningProxy start(String yaml) throws Exception {
    Path dir = Files.createTempDirectory("cryoproxy-test");
    Path file = dir.resolve("cryoproxy.yaml");
    String admin = yaml.lines().anyMatch(l -> l.startsWith("admin:")) ? "" : ADMIN;
    String listen =
        yaml.lines().anyMatch(l -> l.startsWith("listen:"))
            ? ""
            : "listen: { host: 127.0.0.1, port: 0 }\n";
    Files.writeString(file, listen + admin + yaml);
    ConfigLoader.load(file, Map.of()); // fail here, with the key named, on a bad test config
    return new RunningProxy(ProxyServer.start(file), dir);
  }

  /** The YAML file the proxy was started from; RELOAD reads it again. */
  public Path configFile() {
    return dir.resolve("cryoproxy.yaml");
  }

  /** A config mapping database {@code name} to {@code dbname} on the given node, trust auth. */
  public static String database(String name, String dbname, String host, int port) {
    return "databases:\n  "
        + name
        + ":\n    dbname: "
        + dbname
        + "\n    primary: { host: "
        + host
        + ", port: "
        + port
        + " }\n";
  }

  public ProxyServer server() {
    return server;
  }

  public int port() {
    return server.address().getPort();
  }

  /** {@code http://127.0.0.1:PORT} + {@code path} on the admin endpoint. */
  public URI adminUri(String path) {
    InetSocketAddress admin = server.adminAddress();
    return URI.create("http://" + admin.getHostString() + ":" + admin.getPort() + path);
  }

  public String jdbcUrl(String database) {
    return "jdbc:postgresql://127.0.0.1:" + port() + "/" + database;
  }

  public Connection connect(String database, String user, String password, String... options)
      throws SQLException {
    Properties props = new Properties();
    props.setProperty("user", user);
    if (password != null) {
      props.setProperty("password", password);
    }
    props.setProperty("connectTimeout", "10");
    if (options.length % 2 != 0) {
      throw new IllegalArgumentException("options come in name, value pairs");
    }
    for (int i = 0; i + 1 < options.length; i += 2) {
      props.setProperty(options[i], options[i + 1]);
    }
    return DriverManager.getConnection(jdbcUrl(database), props);
  }

  @Override
  public void close() {
    server.shutdown(Duration.ofSeconds(1));
    try (var files = Files.walk(dir)) {
      files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (Exception ignored) {
      // a temp dir left behind is harmless
    }
  }
}
