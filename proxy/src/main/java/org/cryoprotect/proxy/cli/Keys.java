package org.cryoprotect.proxy.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.SecureRandom;
import java.security.spec.ECGenParameterSpec;
import java.util.HexFormat;
import java.util.Locale;
import java.util.concurrent.Callable;
import org.cryoprotect.proxy.auth.Jwk;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code cryoproxy keys generate --alg ES256|RS256 --out DIR}: a signing key pair for tokens. The
 * private key goes to {@code DIR/KID.jwk.json} (owner-only), its public half is added to {@code
 * DIR/jwks.json} (created, or extended: keys already there stay, which is how a key is rotated in),
 * and {@code DIR/claims.key} gets 32 random bytes as hex for the claims signature, unless it
 * exists.
 */
@Command(name = "keys", description = "Signing keys for tokens.", subcommands = Keys.Generate.class)
final class Keys {
  static final String JWKS = "jwks.json";
  static final String CLAIMS_KEY = "claims.key";

  @Command(name = "generate", description = "Write a key pair, its JWKS entry and a claims key.")
  static final class Generate implements Callable<Integer> {
    @Option(names = "--alg", defaultValue = "ES256", description = "ES256 (default) or RS256")
    String alg;

    @Option(names = "--out", required = true, description = "folder for the files")
    Path out;

    @Option(names = "--kid", description = "key id (default: the algorithm and random hex)")
    String kid;

    private final PrintStream stdout;
    private final PrintStream stderr;

    Generate() {
      this(System.out, System.err);
    }

    Generate(PrintStream stdout, PrintStream stderr) {
      this.stdout = stdout;
      this.stderr = stderr;
    }

    @Override
    public Integer call() {
      SecureRandom random = new SecureRandom();
      String algorithm = alg.toUpperCase(Locale.ROOT);
      if (kid == null) {
        byte[] id = new byte[4];
        random.nextBytes(id);
        kid = algorithm.toLowerCase(Locale.ROOT) + "-" + HexFormat.of().formatHex(id);
      }
      try {
        KeyPair pair = generate(algorithm, random);
        Files.createDirectories(out);
        Path privateFile = out.resolve(kid + ".jwk.json");
        if (Files.exists(privateFile)) {
          stderr.println("cryoproxy keys: " + privateFile + " exists; choose another --kid");
          return Main.CONFIG_ERROR;
        }
        writeSecret(privateFile, Jwk.privateJwk(pair, kid, algorithm).toPrettyString() + "\n");
        Path jwks = out.resolve(JWKS);
        ObjectNode set = readJwks(jwks);
        ((ArrayNode) set.get("keys")).add(Jwk.publicJwk(pair, kid, algorithm));
        Files.writeString(jwks, set.toPrettyString() + "\n", StandardCharsets.UTF_8);
        stdout.println("private key " + privateFile + " (kid " + kid + ", " + algorithm + ")");
        stdout.println("public keys " + jwks + " (" + set.get("keys").size() + " keys)");
        Path claimsKey = out.resolve(CLAIMS_KEY);
        if (!Files.exists(claimsKey)) {
          byte[] key = new byte[32];
          random.nextBytes(key);
          writeSecret(claimsKey, HexFormat.of().formatHex(key) + "\n");
          stdout.println("claims key " + claimsKey);
        }
        return 0;
      } catch (IllegalArgumentException | GeneralSecurityException | IOException e) {
        stderr.println("cryoproxy keys: " + e.getMessage());
        return Main.CONFIG_ERROR;
      }
    }

    static KeyPair generate(String algorithm, SecureRandom random) throws GeneralSecurityException {
      switch (algorithm) {
        case Jwk.ES256 -> {
          KeyPairGenerator ec = KeyPairGenerator.getInstance("EC");
          ec.initialize(new ECGenParameterSpec("secp256r1"), random);
          return ec.generateKeyPair();
        }
        case Jwk.RS256 -> {
          KeyPairGenerator rsa = KeyPairGenerator.getInstance("RSA");
          rsa.initialize(2048, random);
          return rsa.generateKeyPair();
        }
        default ->
            throw new IllegalArgumentException("--alg must be ES256 or RS256, not " + algorithm);
      }
    }

    private static ObjectNode readJwks(Path jwks) throws IOException {
      if (!Files.exists(jwks)) {
        ObjectNode set = Jwk.json().createObjectNode();
        set.putArray("keys");
        return set;
      }
      JsonNode read = Jwk.json().readTree(jwks.toFile());
      if (!(read instanceof ObjectNode set) || !read.path("keys").isArray()) {
        throw new IOException(jwks + " is not a JWKS (an object with a \"keys\" array)");
      }
      return set;
    }
  }

  /** Creates {@code file} readable by its owner only from the start (POSIX file systems). */
  static void writeSecret(Path file, String text) throws IOException {
    try {
      Files.createFile(
          file, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
    } catch (UnsupportedOperationException notPosix) {
      Files.createFile(file);
    }
    Files.writeString(file, text, StandardCharsets.UTF_8, StandardOpenOption.WRITE);
  }
}
