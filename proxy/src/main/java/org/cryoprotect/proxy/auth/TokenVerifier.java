package org.cryoprotect.proxy.auth;

import com.auth0.jwt.JWT;
import com.auth0.jwt.JWTVerifier;
import com.auth0.jwt.algorithms.Algorithm;
import com.auth0.jwt.exceptions.AlgorithmMismatchException;
import com.auth0.jwt.exceptions.IncorrectClaimException;
import com.auth0.jwt.exceptions.JWTDecodeException;
import com.auth0.jwt.exceptions.JWTVerificationException;
import com.auth0.jwt.exceptions.MissingClaimException;
import com.auth0.jwt.exceptions.SignatureVerificationException;
import com.auth0.jwt.exceptions.TokenExpiredException;
import com.auth0.jwt.interfaces.DecodedJWT;
import com.fasterxml.jackson.databind.JsonNode;
import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import com.github.benmanes.caffeine.cache.Expiry;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.attribute.FileTime;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.interfaces.ECPublicKey;
import java.security.interfaces.RSAPublicKey;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.cryoprotect.proxy.config.ProxyConfig.Jwt;
import org.cryoprotect.proxy.config.ProxyConfig.RoleRule;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Verifies the tokens clients present as passwords (DESIGN §6) and maps them to a server login
 * role. A token is accepted only when: it is within {@code max_token_bytes}; its {@code alg} is on
 * the allow-list; the key its {@code kid} names (or the one key, or the HS256 secret) exists and is
 * of that algorithm, so an HMAC can never be checked with a public key; the signature verifies;
 * {@code exp} is present and, with {@code nbf} and {@code iat}, within the clock skew; {@code iss}
 * and {@code aud} match when configured; and its role claim and scopes map to a role.
 *
 * <p>The JWKS file is read again when its modification time changes (looked at no more than once a
 * second), so keys are added and removed without a restart. Thread-safe; verification runs where it
 * is called (an ES256 check takes a fraction of a millisecond).
 *
 * <p>Verified tokens are cached by their SHA-256 until they expire (a pool reconnecting with one
 * token verifies its signature once). A hit is still checked against the clock, the revocation
 * list, and the key set it was verified with: a key removed from the JWKS ends its cached tokens.
 */
public final class TokenVerifier {
  private static final Logger log = LoggerFactory.getLogger(TokenVerifier.class);
  private static final long RECHECK_NANOS = 1_000_000_000L;
  private static final int CACHE_ENTRIES = 10_000;

  /** Why a token was refused; the metric label is the lower-case name. */
  public enum Reason {
    MALFORMED,
    TOO_LARGE,
    BAD_SIGNATURE,
    UNKNOWN_KID,
    EXPIRED,
    NOT_YET_VALID,
    BAD_AUDIENCE,
    BAD_ISSUER,
    UNMAPPED_ROLE,
    REVOKED;

    public String label() {
      return name().toLowerCase(Locale.ROOT);
    }
  }

  /** A refused token; {@link #getMessage} is safe to show the client. */
  public static final class Rejected extends Exception {
    private final Reason reason;

    public Rejected(Reason reason, String message) {
      super(message, null, false, false);
      this.reason = reason;
    }

    public Reason reason() {
      return reason;
    }
  }

  /**
   * An accepted token: the exact JSON of its claims (what {@code request.jwt.claims} carries), its
   * signature under the claims key, and the login role it maps to.
   */
  public record Verified(
      String claims,
      String claimsSignature,
      String subject,
      String jti,
      String role,
      List<String> scopes,
      Instant expiresAt,
      boolean cached) {}

  /** A cache entry: the verdict and the key set it was reached with. */
  private record Entry(Verified verified, Map<String, Algorithm> keys) {}

  private final Jwt config;
  private final Clock clock;
  private final byte[] claimsKey;
  private volatile Map<String, Algorithm> keys = Map.of(); // kid -> verifying algorithm
  private volatile FileTime keysModified;
  private volatile long keysCheckedNanos;
  private final Revocations revocations;
  private final Cache<String, Entry> cache;

  public TokenVerifier(Jwt config, Clock clock) throws IOException, GeneralSecurityException {
    this(config, clock, Revocations.none());
  }

  public TokenVerifier(Jwt config, Clock clock, Revocations revocations)
      throws IOException, GeneralSecurityException {
    this.config = config;
    this.clock = clock;
    this.revocations = revocations;
    this.cache =
        Caffeine.newBuilder()
            .maximumSize(CACHE_ENTRIES)
            .expireAfter(
                new Expiry<String, Entry>() {
                  @Override
                  public long expireAfterCreate(String key, Entry e, long now) {
                    Instant end = e.verified().expiresAt().plus(config.clockSkew());
                    return Math.max(0, Duration.between(clock.instant(), end).toNanos());
                  }

                  @Override
                  public long expireAfterUpdate(String key, Entry e, long now, long left) {
                    return left;
                  }

                  @Override
                  public long expireAfterRead(String key, Entry e, long now, long left) {
                    return left;
                  }
                })
            .build();
    this.claimsKey =
        HexFormat.of()
            .parseHex(
                Files.readString(config.claimsKeyFile(), StandardCharsets.US_ASCII)
                    .replaceAll("\\s+", ""));
    if (claimsKey.length < 32) {
      throw new GeneralSecurityException(
          config.claimsKeyFile() + " holds fewer than 32 bytes (64 hex digits)");
    }
    if (config.jwksFile() != null) {
      loadKeys();
    }
  }

  /**
   * Verifies {@code token} and maps it to a role, from the cache when it was verified before;
   * throws {@link Rejected} with the reason.
   */
  public Verified verify(String token) throws Rejected {
    if (token == null || token.isBlank()) {
      throw new Rejected(Reason.MALFORMED, "empty token");
    }
    if (token.length() > config.maxTokenBytes()) {
      throw new Rejected(
          Reason.TOO_LARGE, "token longer than " + config.maxTokenBytes() + " bytes");
    }
    String hash = sha256(token);
    Map<String, Algorithm> keysNow = currentKeys();
    Entry hit = cache.getIfPresent(hash);
    if (hit != null && hit.keys() == keysNow) {
      Verified v = hit.verified();
      if (!clock.instant().isBefore(v.expiresAt().plus(config.clockSkew()))) {
        throw new Rejected(Reason.EXPIRED, "token expired");
      }
      if (revocations.isRevoked(v.jti())) {
        throw new Rejected(Reason.REVOKED, "token revoked");
      }
      return new Verified(
          v.claims(),
          v.claimsSignature(),
          v.subject(),
          v.jti(),
          v.role(),
          v.scopes(),
          v.expiresAt(),
          true);
    }
    Verified verified = verifyWhole(token);
    cache.put(hash, new Entry(verified, keysNow));
    return verified;
  }

  /** Whether a session's token has been revoked since its login. */
  public boolean revoked(Verified token) {
    return revocations.isRevoked(token.jti());
  }

  private Verified verifyWhole(String token) throws Rejected {
    DecodedJWT decoded;
    try {
      decoded = JWT.decode(token);
    } catch (JWTDecodeException e) {
      throw new Rejected(Reason.MALFORMED, "not a JWT");
    }
    String alg = decoded.getAlgorithm();
    if (alg == null || !config.algorithms().contains(alg)) {
      throw new Rejected(Reason.BAD_SIGNATURE, "algorithm " + alg + " is not accepted");
    }
    Algorithm algorithm = algorithm(alg, decoded.getKeyId());
    JWTVerifier verifier = verifier(algorithm);
    try {
      verifier.verify(decoded);
    } catch (AlgorithmMismatchException | SignatureVerificationException e) {
      throw new Rejected(Reason.BAD_SIGNATURE, "bad signature");
    } catch (TokenExpiredException e) {
      throw new Rejected(Reason.EXPIRED, "token expired");
    } catch (MissingClaimException e) {
      throw claimRefused(e.getClaimName(), "token has no " + e.getClaimName() + " claim");
    } catch (IncorrectClaimException e) {
      throw claimRefused(e.getClaimName(), "token " + e.getClaimName() + " claim refused");
    } catch (JWTVerificationException e) {
      throw new Rejected(Reason.MALFORMED, "token refused");
    }
    if (decoded.getExpiresAtAsInstant() == null) {
      throw new Rejected(Reason.MALFORMED, "token has no exp claim");
    }
    String claims =
        new String(Base64.getUrlDecoder().decode(decoded.getPayload()), StandardCharsets.UTF_8);
    JsonNode tree;
    try {
      tree = Jwk.json().readTree(claims);
    } catch (IOException e) {
      throw new Rejected(Reason.MALFORMED, "claims are not JSON");
    }
    if (revocations.isRevoked(decoded.getId())) {
      throw new Rejected(Reason.REVOKED, "token revoked");
    }
    List<String> scopes = scopes(path(tree, config.scopeClaim()));
    String role = map(path(tree, config.roleClaim()), scopes);
    return new Verified(
        claims,
        sign(claims),
        decoded.getSubject(),
        decoded.getId(),
        role,
        List.copyOf(scopes),
        decoded.getExpiresAtAsInstant(),
        false);
  }

  private static String sha256(String token) {
    try {
      MessageDigest digest = MessageDigest.getInstance("SHA-256");
      return HexFormat.of().formatHex(digest.digest(token.getBytes(StandardCharsets.UTF_8)));
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("SHA-256 unavailable", e);
    }
  }

  /** The hex HMAC-SHA256 of {@code claims} under the claims key, as {@code auth.jwt()} checks. */
  public String sign(String claims) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(claimsKey, "HmacSHA256"));
      return HexFormat.of().formatHex(mac.doFinal(claims.getBytes(StandardCharsets.UTF_8)));
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("HmacSHA256 unavailable", e);
    }
  }

  private JWTVerifier verifier(Algorithm algorithm) {
    long leeway = config.clockSkew().toSeconds();
    var builder = JWT.require(algorithm).acceptLeeway(leeway).withClaimPresence("exp");
    if (config.issuer() != null) {
      builder.withIssuer(config.issuer());
    }
    if (config.audience() != null) {
      builder.withAudience(config.audience());
    }
    return ((com.auth0.jwt.JWTVerifier.BaseVerification) builder).build(clock);
  }

  private static Rejected claimRefused(String claim, String message) {
    return switch (claim == null ? "" : claim) {
      case "iss" -> new Rejected(Reason.BAD_ISSUER, message);
      case "aud" -> new Rejected(Reason.BAD_AUDIENCE, message);
      case "nbf", "iat" -> new Rejected(Reason.NOT_YET_VALID, "token not valid yet");
      case "exp" -> new Rejected(Reason.EXPIRED, "token expired");
      default -> new Rejected(Reason.MALFORMED, message);
    };
  }

  /** The algorithm that checks a token signed with {@code alg} under {@code kid}. */
  private Algorithm algorithm(String alg, String kid) throws Rejected {
    if (alg.equals("HS256")) {
      if (config.secret() == null) {
        throw new Rejected(Reason.BAD_SIGNATURE, "no HS256 secret is configured");
      }
      return Algorithm.HMAC256(config.secret().getBytes(StandardCharsets.UTF_8));
    }
    Map<String, Algorithm> current = currentKeys();
    Algorithm key;
    if (kid != null) {
      key = current.get(kid);
    } else {
      key = current.size() == 1 ? current.values().iterator().next() : null;
    }
    if (key == null) {
      throw new Rejected(Reason.UNKNOWN_KID, "unknown signing key " + kid);
    }
    if (!key.getName().equals(alg)) {
      throw new Rejected(Reason.BAD_SIGNATURE, "key " + kid + " is not an " + alg + " key");
    }
    return key;
  }

  private String map(String roleClaim, List<String> scopes) throws Rejected {
    List<RoleRule> rules = roleClaim == null ? null : config.roles().get(roleClaim);
    if (rules != null) {
      for (RoleRule rule : rules) {
        if (rule.scope() == null || scopes.contains(rule.scope())) {
          return rule.role();
        }
      }
    }
    throw new Rejected(Reason.UNMAPPED_ROLE, "no role for this token's role and scopes");
  }

  /** The text at a dotted path ({@code app_metadata.role}), or null. */
  private static String path(JsonNode tree, String dotted) {
    JsonNode at = tree;
    for (String part : dotted.split("\\.")) {
      at = at.path(part);
    }
    return at.isMissingNode() || at.isNull()
        ? null
        : at.isValueNode() ? at.asText() : at.toString();
  }

  /** Scopes as a space-separated string or a JSON array (already rendered by {@link #path}). */
  private static List<String> scopes(String value) {
    List<String> scopes = new ArrayList<>();
    if (value == null) {
      return scopes;
    }
    if (value.startsWith("[")) {
      try {
        for (JsonNode s : Jwk.json().readTree(value)) {
          scopes.add(s.asText());
        }
        return scopes;
      } catch (IOException e) {
        return scopes;
      }
    }
    for (String s : value.trim().split("\\s+")) {
      if (!s.isEmpty()) {
        scopes.add(s);
      }
    }
    return scopes;
  }

  private Map<String, Algorithm> currentKeys() {
    long now = System.nanoTime();
    if (config.jwksFile() != null && now - keysCheckedNanos > RECHECK_NANOS) {
      keysCheckedNanos = now;
      try {
        if (!Files.getLastModifiedTime(config.jwksFile()).equals(keysModified)) {
          loadKeys();
        }
      } catch (IOException | GeneralSecurityException e) {
        log.warn(
            "JWKS {} not reloaded, keeping the keys read before: {}",
            config.jwksFile(),
            e.getMessage());
      }
    }
    return keys;
  }

  private synchronized void loadKeys() throws IOException, GeneralSecurityException {
    FileTime modified = Files.getLastModifiedTime(config.jwksFile());
    JsonNode jwks = Jwk.json().readTree(config.jwksFile().toFile());
    if (!jwks.path("keys").isArray()) {
      throw new GeneralSecurityException(config.jwksFile() + " has no \"keys\" array");
    }
    Map<String, Algorithm> loaded = new HashMap<>();
    for (JsonNode jwk : jwks.path("keys")) {
      String kid = jwk.path("kid").asText(null);
      String alg = Jwk.algorithm(jwk);
      PublicKey key = Jwk.publicKey(jwk);
      Algorithm algorithm =
          switch (alg) {
            case Jwk.ES256 -> Algorithm.ECDSA256((ECPublicKey) key, null);
            case Jwk.RS256 -> Algorithm.RSA256((RSAPublicKey) key, null);
            default -> throw new GeneralSecurityException("key " + kid + ": unsupported " + alg);
          };
      loaded.put(kid, algorithm);
    }
    keys = Map.copyOf(loaded);
    keysModified = modified;
    log.info("JWKS {}: {} keys {}", config.jwksFile(), loaded.size(), loaded.keySet());
  }
}
