package org.cryoprotect.proxy.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import org.cryoprotect.proxy.ProxyServer;
import org.cryoprotect.proxy.config.ConfigException;
import org.cryoprotect.proxy.config.ConfigLoader;
import org.cryoprotect.proxy.config.ProxyConfig;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code cryoproxy run|check-config --config FILE}; exit 2 for a bad configuration. */
@Command(
    name = "cryoproxy",
    mixinStandardHelpOptions = true,
    versionProvider = Main.Version.class,
    description = "PostgreSQL wire-protocol proxy: pooling, routing, resilience, observability.",
    subcommands = {Main.Run.class, Main.CheckConfig.class, Migrate.class, Keys.class, Token.class})
public final class Main {
  static final int CONFIG_ERROR = 2;

  public static void main(String[] args) {
    System.exit(new CommandLine(new Main()).execute(args));
  }

  @Command(name = "run", description = "Run the proxy until SIGTERM or SIGINT.")
  static final class Run implements Callable<Integer> {
    @Option(names = "--config", required = true, description = "YAML configuration file")
    Path config;

    @Override
    public Integer call() throws Exception {
      ProxyServer server;
      try {
        server = ProxyServer.start(config);
      } catch (ConfigException e) {
        System.err.println("cryoproxy: invalid configuration: " + e.getMessage());
        return CONFIG_ERROR;
      }
      Runtime.getRuntime()
          .addShutdownHook(
              new Thread(
                  () -> {
                    server.shutdown(server.config().limits().shutdownTimeout());
                    flushLogs();
                  },
                  "cryoproxy-shutdown"));
      reloadOnSighup(server);
      server.awaitTermination();
      return 0;
    }
  }

  /** Log lines go through an asynchronous appender: write out the queue before the JVM ends. */
  private static void flushLogs() {
    if (org.slf4j.LoggerFactory.getILoggerFactory()
        instanceof ch.qos.logback.classic.LoggerContext context) {
      context.stop();
    }
  }

  /** SIGHUP re-reads the configuration file, as PgBouncer does; a bad file changes nothing. */
  @SuppressWarnings("restriction")
  private static void reloadOnSighup(ProxyServer server) {
    try {
      sun.misc.Signal.handle(
          new sun.misc.Signal("HUP"),
          signal -> {
            try {
              server.reload();
            } catch (Exception e) {
              org.slf4j.LoggerFactory.getLogger(Main.class)
                  .error("reload failed, configuration unchanged: {}", e.getMessage());
            }
          });
    } catch (IllegalArgumentException | UnsupportedOperationException e) {
      // no SIGHUP on this platform: RELOAD in the admin console still works
    }
  }

  @Command(name = "check-config", description = "Validate a configuration file and exit.")
  static final class CheckConfig implements Callable<Integer> {
    @Option(names = "--config", required = true, description = "YAML configuration file")
    Path config;

    @Override
    public Integer call() {
      try {
        ProxyConfig loaded = ConfigLoader.load(config);
        System.out.println(
            "configuration OK: "
                + loaded.databases().size()
                + " databases, listen "
                + loaded.listen());
        return 0;
      } catch (ConfigException e) {
        System.err.println("cryoproxy: invalid configuration: " + e.getMessage());
        return CONFIG_ERROR;
      }
    }
  }

  static final class Version implements CommandLine.IVersionProvider {
    @Override
    public String[] getVersion() {
      String version = Main.class.getPackage().getImplementationVersion();
      return new String[] {"cryoproxy " + (version == null ? "development build" : version)};
    }
  }
}
