package org.cryoprotect.proxy.cli;

import com.auth0.jwt.JWT;
import com.auth0.jwt.JWTCreator;
import com.auth0.jwt.algorithms.Algorithm;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.interfaces.ECPrivateKey;
import java.security.interfaces.RSAPrivateKey;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.cryoprotect.proxy.auth.Jwk;
import org.cryoprotect.proxy.config.ConfigException;
import org.cryoprotect.proxy.config.ConfigLoader;
import org.postgresql.ds.PGSimpleDataSource;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code cryoproxy token issue} mints a short-lived, scoped token from a private JWK (what an
 * application presents instead of a service-role password); {@code cryoproxy token revoke} lists a
 * token's {@code jti} in {@code auth.revoked_tokens} of every configured database.
 */
@Command(
    name = "token",
    description = "Issue and revoke tokens.",
    subcommands = {Token.Issue.class, Token.Revoke.class})
final class Token {
  private static final Pattern DURATION = Pattern.compile("(\\d+)(ms|s|m|h|d)");

  @Command(name = "issue", description = "Print a signed token.")
  static final class Issue implements Callable<Integer> {
    @Option(names = "--key", required = true, description = "private JWK (keys generate)")
    Path key;

    @Option(names = "--role", required = true, description = "the role claim")
    String role;

    @Option(names = "--scope", description = "a scope; repeat for several", split = " ")
    List<String> scopes = List.of();

    @Option(names = "--sub", required = true, description = "the subject")
    String sub;

    @Option(names = "--ttl", defaultValue = "15m", description = "lifetime, e.g. 15m, 1h, 90s")
    String ttl;

    @Option(names = "--iss", description = "issuer")
    String issuer;

    @Option(names = "--aud", description = "audience")
    String audience;

    private final PrintStream out;
    private final PrintStream err;

    Issue() {
      this(System.out, System.err);
    }

    Issue(PrintStream out, PrintStream err) {
      this.out = out;
      this.err = err;
    }

    @Override
    public Integer call() {
      try {
        Duration life = duration(ttl);
        JsonNode jwk = Jwk.json().readTree(key.toFile());
        Algorithm algorithm = algorithm(jwk);
        Instant now = Instant.now();
        JWTCreator.Builder token =
            JWT.create()
                .withKeyId(jwk.path("kid").asText(null))
                .withSubject(sub)
                .withClaim("role", role)
                .withIssuedAt(now)
                .withNotBefore(now)
                .withExpiresAt(now.plus(life))
                .withJWTId(UUID.randomUUID().toString());
        if (!scopes.isEmpty()) {
          token.withClaim("scope", String.join(" ", scopes));
        }
        if (issuer != null) {
          token.withIssuer(issuer);
        }
        if (audience != null) {
          token.withAudience(audience);
        }
        out.println(token.sign(algorithm));
        return 0;
      } catch (IllegalArgumentException | IOException | GeneralSecurityException e) {
        err.println("cryoproxy token issue: " + e.getMessage());
        return Main.CONFIG_ERROR;
      }
    }

    private static Algorithm algorithm(JsonNode jwk) throws GeneralSecurityException {
      String alg = Jwk.algorithm(jwk);
      return switch (alg) {
        case Jwk.ES256 -> Algorithm.ECDSA256(null, (ECPrivateKey) Jwk.privateKey(jwk));
        case Jwk.RS256 -> Algorithm.RSA256(null, (RSAPrivateKey) Jwk.privateKey(jwk));
        default -> throw new GeneralSecurityException("cannot sign with " + alg);
      };
    }
  }

  @Command(name = "revoke", description = "Revoke a token by its jti in every database.")
  static final class Revoke implements Callable<Integer> {
    @Option(names = "--config", required = true, description = "YAML configuration file")
    Path config;

    @Option(names = "--reason", description = "why (kept with the revocation)")
    String reason;

    @Parameters(index = "0", paramLabel = "JTI", description = "the token's jti claim")
    String jti;

    private final PrintStream out;
    private final PrintStream err;

    Revoke() {
      this(System.out, System.err);
    }

    Revoke(PrintStream out, PrintStream err) {
      this.out = out;
      this.err = err;
    }

    @Override
    public Integer call() {
      Map<String, PGSimpleDataSource> targets;
      try {
        targets = Migrate.targets(ConfigLoader.load(config));
      } catch (ConfigException e) {
        err.println("cryoproxy token revoke: invalid configuration: " + e.getMessage());
        return Main.CONFIG_ERROR;
      }
      for (Map.Entry<String, PGSimpleDataSource> target : targets.entrySet()) {
        try (Connection c = target.getValue().getConnection();
            PreparedStatement revoke =
                c.prepareStatement(
                    "INSERT INTO auth.revoked_tokens (jti, reason) VALUES (?, ?)"
                        + " ON CONFLICT (jti) DO NOTHING")) {
          revoke.setString(1, jti);
          revoke.setString(2, reason);
          int added = revoke.executeUpdate();
          out.printf(
              "%s: %s%n",
              target.getKey(), added == 1 ? "revoked " + jti : jti + " already revoked");
        } catch (SQLException e) {
          err.println("cryoproxy token revoke: " + target.getKey() + ": " + e.getMessage());
          return Main.CONFIG_ERROR;
        }
      }
      return 0;
    }
  }

  /** {@code 90s}, {@code 15m}, {@code 1h}, {@code 2d}, {@code 500ms}. */
  static Duration duration(String text) {
    Matcher m = DURATION.matcher(text.trim().toLowerCase(Locale.ROOT));
    if (!m.matches()) {
      throw new IllegalArgumentException("--ttl: expected e.g. 15m, 1h or 90s, not " + text);
    }
    long n = Long.parseLong(m.group(1));
    Duration d =
        switch (m.group(2)) {
          case "ms" -> Duration.ofMillis(n);
          case "s" -> Duration.ofSeconds(n);
          case "m" -> Duration.ofMinutes(n);
          case "h" -> Duration.ofHours(n);
          default -> Duration.ofDays(n);
        };
    if (d.isZero()) {
      throw new IllegalArgumentException("--ttl must be positive");
    }
    return d;
  }
}
