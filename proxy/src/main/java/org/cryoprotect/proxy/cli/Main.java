package org.cryoprotect.proxy.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicReference;
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
      // Signals first: a SIGHUP or SIGTERM that arrives once the port is open, but before a
      // handler is in place, would end the JVM the default way (no reload, no graceful drain).
      AtomicReference<ProxyServer> started = new AtomicReference<>();
      Runtime.getRuntime()
          .addShutdownHook(
              new Thread(
                  () -> {
                    ProxyServer server = started.get();
                    if (server != null) {
                      server.shutdown(server.config().limits().shutdownTimeout());
                    }
                    flushLogs();
                  },
                  "cryoproxy-shutdown"));
      reloadOnSighup(started);
      try {
        started.set(ProxyServer.start(config));
      } catch (ConfigException e) {
        System.err.println("cryoproxy: invalid configuration: " + e.getMessage());
        return CONFIG_ERROR;
      }
      if (reloadWhenStarted) {
        started.get().reload();
      }
      started.get().awaitTermination();
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

  private static volatile boolean reloadWhenStarted;

  /**
   * SIGHUP re-reads the configuration file, as PgBouncer does; a bad file changes nothing. A
   * process that ignores SIGHUP (started under nohup, whose children inherit the ignore) keeps
   * ignoring it: the JVM then installs no handler, and the log says so.
   */
  @SuppressWarnings("restriction")
  private static void reloadOnSighup(AtomicReference<ProxyServer> started) {
    String unavailable;
    try {
      sun.misc.SignalHandler before =
          sun.misc.Signal.handle(
              new sun.misc.Signal("HUP"),
              signal -> {
                ProxyServer server = started.get();
                if (server == null) {
                  reloadWhenStarted = true; // still starting: reloaded once it is up
                  return;
                }
                try {
                  server.reload();
                } catch (Exception e) {
                  org.slf4j.LoggerFactory.getLogger(Main.class)
                      .error("reload failed, configuration unchanged: {}", e.getMessage());
                }
              });
      if (before != sun.misc.SignalHandler.SIG_IGN) {
        return;
      }
      unavailable = "the process ignores it, as under nohup";
    } catch (IllegalArgumentException | UnsupportedOperationException e) {
      unavailable = e.getMessage();
    }
    org.slf4j.LoggerFactory.getLogger(Main.class)
        .warn(
            "SIGHUP cannot reload the configuration here ({}): use RELOAD on the admin console",
            unavailable);
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
