package org.cryoprotect.proxy;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.cryoprotect.proxy.config.ConfigLoader;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.Commands;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The container stack's files: docker-compose.yml against the compose specification's JSON schema
 * (deploy/check-compose.py, Debian python3-yaml and python3-jsonschema), and the proxy
 * configuration the stack mounts against the proxy's own loader. Bringing the stack up takes
 * minutes and containers: deploy/compose-up.sh does that, outside {@code mvn verify}.
 */
class DeployFilesTest {
  private static final Path ROOT = Path.of("..").toAbsolutePath().normalize();
  private static final Path PYTHON = Path.of("/usr/bin/python3");

  @TempDir Path dir;

  @Test
  void theComposeFilePassesTheComposeSpecificationSchema() throws Exception {
    requireChecker();
    Commands.Result result = check(ROOT.resolve("docker-compose.yml"));
    assertThat(result.exit()).as(result.output()).isZero();
    assertThat(result.output()).contains("OK against the compose specification");
  }

  @Test
  void aBrokenComposeFileIsRefusedWithWhereItIsWrong() throws Exception {
    requireChecker();
    String compose = Files.readString(ROOT.resolve("docker-compose.yml"));
    assertThat(compose).contains("    healthcheck:\n");
    Path typo = dir.resolve("typo.yml");
    Files.writeString(typo, compose.replaceFirst("    healthcheck:\n", "    helthcheck:\n"));
    Commands.Result result = check(typo);
    assertThat(result.exit()).isEqualTo(1);
    assertThat(result.output()).contains("helthcheck");

    Path bakedPassword = dir.resolve("password.yml");
    Files.writeString(
        bakedPassword,
        compose.replaceFirst(
            "\\$\\{POSTGRES_PASSWORD:\\?set it in \\.env\\}", "\\${POSTGRES_PASSWORD:-postgres}"));
    result = check(bakedPassword);
    assertThat(result.exit()).as(result.output()).isEqualTo(1);
    assertThat(result.output()).containsIgnoringCase("password");
  }

  @Test
  void theStacksProxyConfigurationLoads() throws Exception {
    ProxyConfig config =
        ConfigLoader.load(
            ROOT.resolve("deploy/cryoproxy/cryoproxy.yaml"),
            Map.of("CRYOPROXY_AUTH__AUTH_PASSWORD", "secret"));
    assertThat(config.databases()).containsKey("app");
  }

  private static void requireChecker() throws Exception {
    boolean present =
        Files.isExecutable(PYTHON)
            && Commands.run(
                        ROOT,
                        Duration.ofSeconds(30),
                        null,
                        List.of(PYTHON.toString(), "-c", "import jsonschema, yaml"))
                    .exit()
                == 0;
    ClientTools.requireTool(
        present, "/usr/bin/python3 with jsonschema and yaml (Debian python3-jsonschema)");
  }

  private static Commands.Result check(Path compose) throws Exception {
    return Commands.run(
        ROOT,
        Duration.ofSeconds(60),
        null,
        List.of(
            PYTHON.toString(),
            ROOT.resolve("deploy/check-compose.py").toString(),
            compose.toString()));
  }
}
