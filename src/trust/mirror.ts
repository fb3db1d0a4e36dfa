/**
 * Mirrors for targets: a second base URL whose layout is flat, as GitHub release assets are
 * (`https://github.com/<owner>/<repo>/releases/download/<tag>/<asset>`). A release asset has no
 * folders, so a target `robot-ai/robot-ai-2.1.0.tar.gz` is the asset `robot-ai-2.1.0.tar.gz`:
 * its base name. `ota-repo mirror-assets` writes the files under these names and refuses a
 * repository in which two targets would share one; the robot asks the mirror for the same name.
 * Whatever the mirror sends is held to the target's signed length and SHA-256, as from the server.
 */
export function mirrorAssetName(targetName: string): string {
  const slash = targetName.lastIndexOf('/');
  return slash === -1 ? targetName : targetName.slice(slash + 1);
}

export function mirrorAssetUrl(mirrorBaseUrl: string, targetName: string): string {
  const base = mirrorBaseUrl.endsWith('/') ? mirrorBaseUrl : `${mirrorBaseUrl}/`;
  return new URL(encodeURIComponent(mirrorAssetName(targetName)), base).toString();
}
